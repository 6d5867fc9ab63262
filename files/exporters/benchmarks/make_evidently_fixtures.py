"""Write tests/data/evidently_fixtures.json: Evidently 0.7's PSI and KL on seeded datasets.

Run with the benchmark venv, which has Evidently installed (never the project's venv):

    .cache/bench-venv/bin/python files/exporters/benchmarks/make_evidently_fixtures.py

Evidently is run end to end (Report + ValueDrift, method psi and kl_div), so the
fixture holds what a user of Evidently sees. The data is stored in the fixture
(rounded to 6 decimals before Evidently sees it), so the unit test needs neither
Evidently nor a reproducible random generator.
"""

import argparse
import json
import os
import sys

import numpy as np
import pandas as pd

import evidently
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "tests", "data", "evidently_fixtures.json")


def cases():
    rng = np.random.default_rng(20240607)
    r6 = lambda a: np.round(np.asarray(a, dtype=float), 6)  # noqa: E731
    out = []
    out.append(("binned_normal_shift", "numeric",
                r6(rng.normal(0.0, 1.0, 3000)), r6(rng.normal(0.5, 1.2, 2500))))
    out.append(("binned_no_drift", "numeric",
                r6(rng.normal(10.0, 2.0, 2000)), r6(rng.normal(10.0, 2.0, 2000))))
    out.append(("binned_lognormal_skew", "numeric",
                r6(rng.lognormal(0.0, 1.0, 2500)), r6(rng.lognormal(0.3, 0.8, 1500))))
    # current far outside: most bins empty on one side or the other
    out.append(("binned_empty_bins", "numeric",
                r6(rng.uniform(0.0, 1.0, 1500)), r6(rng.uniform(0.8, 5.0, 1200))))
    # one far outlier: smallest non-zero reference share <= 1e-4 -> fill with share / 1e6
    ref = r6(np.append(rng.normal(0.0, 1.0, 11999), 80.0))
    out.append(("binned_tiny_share_fill", "numeric", ref, r6(rng.normal(0.2, 1.0, 3000))))
    # NaN and +-inf rows are dropped before anything else
    ref = r6(rng.normal(0.0, 1.0, 2000))
    cur = r6(rng.normal(0.3, 1.0, 1800))
    ref[rng.choice(ref.size, 40, replace=False)] = np.nan
    ref[rng.choice(ref.size, 5, replace=False)] = np.inf
    cur[rng.choice(cur.size, 30, replace=False)] = np.nan
    cur[rng.choice(cur.size, 4, replace=False)] = -np.inf
    cur[rng.choice(cur.size, 3, replace=False)] = np.inf
    out.append(("binned_nan_inf", "numeric", ref, cur))
    # <= 20 distinct values: every exact value is a category (union of both sides)
    out.append(("few_distinct_numeric", "numeric",
                rng.poisson(4.0, 2000).astype(float), (rng.poisson(5.0, 1500) + (rng.random(1500) < 0.02) * 30)
                .astype(float)))
    out.append(("exactly_20_distinct", "numeric",
                rng.integers(0, 20, 1000).astype(float), rng.integers(0, 22, 900).astype(float)))
    out.append(("twenty_one_distinct", "numeric",
                rng.integers(0, 21, 1000).astype(float), rng.integers(0, 21, 900).astype(float)))
    cats = np.array(["chat", "code", "search", "summarise", "translate"])
    ref = rng.choice(cats[:4], 2000, p=[0.4, 0.3, 0.2, 0.1])
    cur = rng.choice(cats[1:], 1500, p=[0.3, 0.3, 0.2, 0.2])  # "chat" vanished, "translate" appeared
    out.append(("categorical_new_and_missing", "categorical", ref, cur))
    ref = rng.choice(cats, 1000)
    cur = rng.choice(cats, 1000)
    out.append(("categorical_no_drift", "categorical", ref, cur))
    return out


def evidently_values(kind, reference, current):
    if kind == "numeric":
        definition = DataDefinition(numerical_columns=["x"])
    else:
        definition = DataDefinition(categorical_columns=["x"])
    ref = Dataset.from_pandas(pd.DataFrame({"x": reference}), data_definition=definition)
    cur = Dataset.from_pandas(pd.DataFrame({"x": current}), data_definition=definition)
    report = Report([ValueDrift(column="x", method="psi"), ValueDrift(column="x", method="kl_div")])
    snapshot = report.run(cur, ref)
    values = {}
    for metric in snapshot.dict()["metrics"]:
        values[metric["config"]["method"]] = float(metric["value"])
    return values["psi"], values["kl_div"]


def encode(values):
    out = []
    for v in np.asarray(values).tolist():
        if isinstance(v, float) and not np.isfinite(v):
            out.append("nan" if np.isnan(v) else ("inf" if v > 0 else "-inf"))
        else:
            out.append(v)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    records = []
    for name, kind, reference, current in cases():
        psi_value, kl_value = evidently_values(kind, reference, current)
        records.append({"name": name, "kind": kind, "psi": psi_value, "kl_divergence": kl_value,
                        "reference": encode(reference), "current": encode(current)})
        print("%-30s psi=%.12g kl=%.12g" % (name, psi_value, kl_value))
    fixture = {
        "evidently_version": evidently.__version__,
        "pandas_version": pd.__version__,
        "numpy_version": np.__version__,
        "python_version": sys.version.split()[0],
        "command": ".cache/bench-venv/bin/python files/exporters/benchmarks/make_evidently_fixtures.py",
        "note": "non-finite values are written as the strings nan, inf, -inf",
        "cases": records,
    }
    with open(args.out, "w") as fh:
        json.dump(fixture, fh, separators=(",", ":"))
        fh.write("\n")
    print("wrote %s (Evidently %s)" % (os.path.abspath(args.out), evidently.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
