#!/bin/sh
# Print "gpu <PCI address>" for every NVIDIA display/3D controller (vendor 0x10de, class 0x03xxxx)
# and "driver <version>" when the NVIDIA kernel module is loaded. Needs nothing but sh, cat and sed.
# Usage: detect_gpus.sh [SYSFS_ROOT] [PROCFS_ROOT]
set -eu
sys="${1:-/sys}"
proc="${2:-/proc}"
for dev in "$sys"/bus/pci/devices/*; do
  [ -r "$dev/vendor" ] && [ -r "$dev/class" ] || continue
  vendor=$(cat "$dev/vendor")
  class=$(cat "$dev/class")
  case "$vendor:$class" in
    0x10de:0x03*) echo "gpu ${dev##*/}" ;;
  esac
done
if [ -r "$sys/module/nvidia/version" ]; then
  echo "driver $(cat "$sys/module/nvidia/version")"
elif [ -r "$proc/driver/nvidia/version" ]; then
  # "NVRM version: NVIDIA UNIX [Open ]Kernel Module for x86_64  570.86.15  Release Build ..."
  version=$(sed -n '/^NVRM/s/.*[[:space:]]\([0-9][0-9]*\.[0-9][0-9]*\(\.[0-9][0-9]*\)\{0,1\}\)[[:space:]].*/\1/p' \
    "$proc/driver/nvidia/version" | head -n 1)
  [ -z "$version" ] || echo "driver $version"
fi
exit 0
