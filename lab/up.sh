#!/usr/bin/env bash
# Create (or start) the lab's systemd containers on their own podman network. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
network=aiplatform-lab
image=${LAB_IMAGE:-localhost/aiplatform-lab-debian:bookworm}
hosts=(lab-monitoring lab-gpu-1 lab-gpu-2)

podman network exists "$network" || podman network create "$network" >/dev/null
for name in "${hosts[@]}"; do
  if podman container exists "$name"; then
    [ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] || podman start "$name" >/dev/null
  else
    podman run -d --name "$name" --hostname "$name" --network "$network" \
      --systemd=always --label aiplatform-lab=1 "$image" /sbin/init >/dev/null
    echo "created $name"
  fi
done
for name in "${hosts[@]}"; do
  for _ in $(seq 60); do
    state=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 1
  done
done
