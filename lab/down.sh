#!/usr/bin/env bash
# Remove the lab's containers and network (the images stay for the next `make lab`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
command -v podman >/dev/null || exit 0
for name in $(podman ps -a --filter label=aiplatform-lab=1 --format '{{.Names}}'); do
  podman rm -f -t 5 "$name" >/dev/null && echo "removed $name"
done
if podman network exists aiplatform-lab; then podman network rm aiplatform-lab >/dev/null; fi
