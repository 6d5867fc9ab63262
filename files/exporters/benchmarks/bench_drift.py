"""Drift benchmark: this package vs Evidently 0.7 on one numeric feature.

Run with the benchmark venv (it has Evidently, pandas and scipy; this package is
taken from files/exporters/src and needs only numpy there):

    .cache/bench-venv/bin/python files/exporters/benchmarks/bench_drift.py [--sizes 1e5,1e6,1e7] [--repeat 3]

Each (method, size) runs in a fresh subprocess: the data (reference N(0,1),
current N(0.3,1.1), N rows per side, seeded) is made first, then tracemalloc
measures the peak memory the method allocates on top of the data, and the
best wall time of ``--repeat`` runs is kept. Methods:

* evidently_psi_kl: Evidently's ``psi`` + ``kl_div`` stattests (pandas engine) on two pd.Series,
  i.e. what Evidently does per column, without the report machinery around it;
* cached_baseline: ``Baseline.score(current)`` with the baseline fitted beforehand
  (what the exporter does per window when it bins in Python; chunked binning);
* fit_and_score: ``drift_scores(reference, current)`` (quantile fit on the reference + scoring);
* evidently_mode: ``drift_scores(..., binning="evidently")`` (this package reproducing Evidently's numbers).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src")
METHODS = ("evidently_psi_kl", "cached_baseline", "fit_and_score", "evidently_mode")


def make_data(n):
    import numpy as np

    rng = np.random.default_rng(12345)
    return rng.normal(0.0, 1.0, n), rng.normal(0.3, 1.1, n)


def run_case(method, n, repeat):
    import numpy as np

    sys.path.insert(0, SRC)
    ref, cur = make_data(n)
    if method == "evidently_psi_kl":
        import pandas as pd
        from evidently.legacy.calculations.stattests import kl_div_stat_test, psi_stat_test
        from evidently.legacy.core import ColumnType

        ref_s, cur_s = pd.Series(ref), pd.Series(cur)

        def op():
            p = psi_stat_test(ref_s, cur_s, ColumnType.Numerical, None).drift_score
            k = kl_div_stat_test(ref_s, cur_s, ColumnType.Numerical, None).drift_score
            return float(p), float(k)
    elif method == "cached_baseline":
        from aiplatform_exporters.drift import Baseline

        baseline = Baseline.fit(ref)

        def op():
            s = baseline.score(cur)
            return s.psi, s.kl_divergence
    elif method == "fit_and_score":
        from aiplatform_exporters.drift import drift_scores

        def op():
            return drift_scores(ref, cur)
    elif method == "evidently_mode":
        from aiplatform_exporters.drift import drift_scores

        def op():
            return drift_scores(ref, cur, binning="evidently")
    else:
        raise SystemExit("unknown method %s" % method)
    op()  # warm-up (imports, caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = op()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    tracemalloc.reset_peak()
    op()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"method": method, "rows_per_side": n, "best_seconds": min(times), "times": times,
            "peak_bytes": peak, "psi": result[0], "kl": result[1]}


def machine():
    import numpy as np

    info = {"python": sys.version.split()[0], "numpy": np.__version__, "platform": platform.platform(),
            "cores": os.cpu_count(), "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)")}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            info["ram_gib"] = round(int(fh.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        import evidently
        import pandas

        info["evidently"] = evidently.__version__
        info["pandas"] = pandas.__version__
    except ImportError:
        pass
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e5,1e6,1e7")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--case", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case[0], int(float(args.case[1])), args.repeat)))
        return 0
    results = []
    for n in [int(float(s)) for s in args.sizes.split(",")]:
        for method in args.methods.split(","):
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--repeat", str(args.repeat),
                                   "--case", method, str(n)], stdout=subprocess.PIPE, universal_newlines=True,
                                  check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            print("%-18s n=%-9d best %9.4f s  peak %9.1f MiB  psi=%.6f kl=%.6f" % (
                method, n, r["best_seconds"], r["peak_bytes"] / 2 ** 20, r["psi"], r["kl"]), flush=True)
    by = dict(((r["method"], r["rows_per_side"]), r) for r in results)
    print()
    for n in sorted(set(r["rows_per_side"] for r in results)):
        ev, cb = by.get(("evidently_psi_kl", n)), by.get(("cached_baseline", n))
        if ev and cb:
            print("n=%d: cached baseline is %.0fx faster than Evidently PSI+KL" % (
                n, ev["best_seconds"] / cb["best_seconds"]))
    out = {"machine": machine(), "results": results}
    print(json.dumps(out["machine"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
