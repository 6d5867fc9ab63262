#!/usr/bin/env bash
# Every check of the NVML exporter that needs a real NVIDIA GPU, in one run of
# about two minutes. Needs python3 with prometheus-client and nvidia-ml-py, and
# nvidia-smi; PyTorch, when present, is used to put the GPU under load.
#
#   bash files/exporters/benchmarks/run_gpu_machine.sh OUTDIR
#
# 1. gpu_check.py on an idle GPU, then again while a matmul loop keeps it busy
#    (so utilization, power and clocks are compared away from zero);
# 2. the console entry point (aiplatform-gpu-exporter) started as a process, with
#    the default labels and with hostname_label: hostname, scraped over HTTP;
# 3. bench_gpu.py: exporter collect and scrape vs raw NVML calls vs nvidia-smi.
# BENCH_GPU_ITERATIONS (default 200) sets bench_gpu.py's iterations.
# Results go to OUTDIR/results.tar.gz (and the log to OUTDIR/run.log);
# the exit status is non-zero when any check failed.
set -u
out=${1:?usage: run_gpu_machine.sh OUTDIR}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
mkdir -p "$out"
exec > >(tee "$out/run.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}"
failed=0
step() { echo; echo "== $*"; }

step machine
{ uname -a; nvidia-smi; python3 --version
  python3 -m pip show prometheus-client nvidia-ml-py 2>/dev/null | grep -E '^(Name|Version)'; } 2>&1 | tee "$work/machine.txt"

step "gpu_check, idle GPU"
timeout 150 python3 "$here/gpu_check.py" --out "$work/idle" || { echo "FAILED: gpu_check idle"; failed=1; }

load=""
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    python3 - <<'EOF' &
import time, torch
a = torch.randn(8192, 8192, device="cuda")
end = time.time() + 90
while time.time() < end:
    for _ in range(20):
        a = (a @ a).clamp_(-1, 1)
    torch.cuda.synchronize()
EOF
    load=$!
    sleep 15
    step "gpu_check, GPU under a matmul load"
    timeout 150 python3 "$here/gpu_check.py" --out "$work/load" || { echo "FAILED: gpu_check under load"; failed=1; }
    kill "$load" 2>/dev/null; wait "$load" 2>/dev/null
else
    echo "no CUDA-enabled PyTorch: the under-load check is not run" | tee "$work/load-not-run.txt"
fi

step "console entry point, default labels and hostname_label: hostname"
printf 'gpu:\n  hostname_label: hostname\n' > "$work/hostname.yml"
port=19843
for variant in default hostname; do
    port=$((port + 1))
    args=(--listen "127.0.0.1:$port")
    [ "$variant" = hostname ] && args+=(--config "$work/hostname.yml")
    python3 -m aiplatform_exporters.gpu.exporter "${args[@]}" > "$work/entry-$variant.log" 2>&1 &
    pid=$!
    ok=0
    for _ in $(seq 1 40); do
        if python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$port/metrics', timeout=10).read().decode())" > "$work/scrape-$variant.txt" 2>/dev/null; then ok=1; break; fi
        sleep 0.25
    done
    kill -TERM "$pid"; wait "$pid"; rc=$?
    label=Hostname; [ "$variant" = hostname ] && label=hostname
    if [ $ok = 1 ] && grep -q '^aiplatform_gpu_exporter_up 1.0' "$work/scrape-$variant.txt" && [ $rc = 0 ] \
        && grep -q "^DCGM_FI_DEV_GPU_TEMP{.*[{,]$label=" "$work/scrape-$variant.txt" \
        && grep -q '^# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter$' "$work/scrape-$variant.txt"; then
        echo "entry $variant: up 1, $(grep -c '^DCGM_FI' "$work/scrape-$variant.txt") DCGM samples, label $label, counters typed, clean exit on SIGTERM"
    else
        echo "FAILED: entry point $variant (scraped=$ok, exit status $rc)"; cat "$work/entry-$variant.log"; failed=1
    fi
done

step bench_gpu
timeout 240 python3 "$here/benchmarks/bench_gpu.py" --iterations "${BENCH_GPU_ITERATIONS:-200}" --out "$work" || { echo "FAILED: bench_gpu"; failed=1; }

echo; echo "overall: $([ $failed = 0 ] && echo PASS || echo FAIL)"
tar -C "$work" -czf "$out/results.tar.gz" .
exit $failed
