#!/usr/bin/env bash
# Build a systemd-capable Debian image for the lab and molecule with debootstrap, once.
# Usage: lab/build-image.sh SUITE [IMAGE]     e.g. lab/build-image.sh bookworm
# Skips the build when the image already exists. No registry is needed.
set -euo pipefail
suite=${1:?suite (bookworm|trixie)}
image=${2:-localhost/aiplatform-lab-debian:${suite}}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}

if podman image exists "$image"; then
  echo "image $image exists, not rebuilt"
  exit 0
fi
rootfs=$(mktemp -d /var/tmp/aiplatform-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $suite into $rootfs (about a minute)"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps,gnupg \
  "$suite" "$rootfs" "$mirror" >/dev/null
# Units that make no sense in a container and slow its boot.
for unit in systemd-remount-fs.service systemd-udevd.service systemd-udev-trigger.service \
            getty@tty1.service console-getty.service sys-kernel-config.mount \
            systemd-modules-load.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
echo "$suite-lab" > "$rootfs/etc/hostname"
rm -f "$rootfs/etc/machine-id" && : > "$rootfs/etc/machine-id"
apt_conf="$rootfs/etc/apt/apt.conf.d/90aiplatform-lab"
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$apt_conf"
tar -C "$rootfs" -c . | podman import -q --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$image" >/dev/null
echo "built $image"
