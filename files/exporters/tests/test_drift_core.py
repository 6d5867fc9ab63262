"""Unit tests of the drift library (numpy only)."""

import json
import math
import os

import numpy as np
import pytest

from aiplatform_exporters.drift import EPSILON, Baseline, drift_scores, kl_divergence, psi, quantile_edges

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "evidently_fixtures.json")


def rng(seed=0):
    return np.random.default_rng(seed)


def test_identical_distributions_score_zero():
    ref = rng().normal(size=5000)
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(ref, ref) == pytest.approx(0.0, abs=1e-12)


def test_shift_increases_both_and_psi_is_about_twice_kl_for_small_shifts():
    r = rng(1)
    ref = r.normal(0, 1, 200000)
    small = r.normal(0.1, 1, 200000)
    large = r.normal(1.0, 1, 200000)
    p_small, k_small = drift_scores(ref, small)
    p_large, k_large = drift_scores(ref, large)
    assert 0 < p_small < p_large and 0 < k_small < k_large
    assert p_small / k_small == pytest.approx(2.0, rel=0.1)  # PSI is the symmetrised KL


def test_hand_computed_values():
    # reference 0..9 once each -> 9 interior edges at 0.9, 1.8, ... bins hold exactly one value each
    ref = np.arange(10, dtype=float)
    b = Baseline.fit(ref, bins=10)
    assert b.n_bins == 10
    cur = np.array([0.0] * 5 + [9.0] * 5)
    counts = b.counts(cur)
    assert counts.tolist() == [5, 0, 0, 0, 0, 0, 0, 0, 0, 5]
    p = np.full(10, 0.1)
    q = np.array([0.5] + [EPSILON] * 8 + [0.5])
    q = q / q.sum()
    expected_psi = float(np.sum((p - q) * np.log(p / q)))
    expected_kl = float(np.sum(p * np.log(p / q)))
    s = b.score(cur)
    assert s.psi == pytest.approx(expected_psi, rel=1e-12)
    assert s.kl_divergence == pytest.approx(expected_kl, rel=1e-12)
    assert s.samples == 10


def test_edges_fitted_once_and_outer_bins_open():
    ref = rng(2).uniform(0, 1, 10000)
    b = Baseline.fit(ref)
    assert b.edges.size == 9
    np.testing.assert_allclose(b.edges, np.quantile(ref, np.linspace(0, 1, 11)[1:-1]))
    counts = b.counts(np.array([-100.0, -1.0, 5.0, 1e9]))
    assert counts[0] == 2 and counts[-1] == 2 and counts.sum() == 4
    # a value equal to an edge goes to the bin above it (like PostgreSQL's width_bucket)
    assert b.counts(np.array([b.edges[3]]))[4] == 1


def test_non_finite_values_are_dropped():
    ref = rng(3).normal(size=1000)
    cur = rng(4).normal(size=1000)
    dirty = np.concatenate([cur, [np.nan, np.inf, -np.inf]])
    assert psi(ref, dirty) == psi(ref, cur)
    assert Baseline.fit(ref).score(dirty).samples == 1000


def test_chunked_counter_equals_one_shot_and_memory_is_per_bin():
    ref = rng(5).normal(size=20000)
    cur = rng(6).normal(0.2, 1.1, 100000)
    b = Baseline.fit(ref)
    c = b.counter()
    for chunk in np.array_split(cur, 17):
        c.update(chunk)
    assert c.counts.nbytes == b.n_bins * 8
    one = b.score(cur)
    chunked = c.score()
    assert chunked.samples == one.samples == cur.size
    assert chunked.psi == pytest.approx(one.psi, rel=1e-12)


def test_categorical_with_unseen_and_missing_categories():
    ref = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    cur = np.array(["a"] * 50 + ["b"] * 30 + ["d"] * 20)  # c vanished, d is new
    b = Baseline.fit(ref)
    assert b.kind == "categorical" and b.categories == ["a", "b", "c"] and b.n_bins == 4
    assert b.counts(cur).tolist() == [50, 30, 0, 20]
    s = b.score(cur)
    assert s.psi > 1.0 and s.kl_divergence > 0.5
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)


def test_epsilon_dominates_empty_bins_and_is_fixed_by_default():
    ref = rng(7).uniform(0, 1, 5000)
    cur = rng(8).uniform(5, 6, 5000)  # everything in the last open bin
    default = psi(ref, cur)
    assert default == psi(ref, cur, epsilon=EPSILON)
    assert psi(ref, cur, epsilon=1e-6) > default  # smaller epsilon, larger value: documented
    assert math.isfinite(default)


def test_bad_input_is_rejected_with_a_message():
    with pytest.raises(ValueError, match="binning"):
        psi([1.0, 2.0], [1.0], binning="sturges")
    with pytest.raises(ValueError, match="bins"):
        quantile_edges([1.0, 2.0], bins=1)
    with pytest.raises(ValueError, match="finite"):
        quantile_edges([np.nan, np.inf])
    with pytest.raises(ValueError, match="reference shares"):
        Baseline("numeric", [0.5, 0.6], 10, edges=[1.0])
    with pytest.raises(ValueError, match="increasing"):
        Baseline("numeric", [0.3, 0.3, 0.4], 10, edges=[2.0, 1.0])


def _decode(values, kind):
    if kind == "categorical":
        return np.array(values, dtype=object)
    return np.array([float(v) if isinstance(v, str) else v for v in values], dtype=float)


def test_evidently_fixture_was_produced_by_evidently_07():
    with open(DATA) as fh:
        fixture = json.load(fh)
    assert fixture["evidently_version"].startswith("0.7.")
    names = set(c["name"] for c in fixture["cases"])
    assert {"binned_normal_shift", "few_distinct_numeric", "binned_empty_bins", "binned_nan_inf",
            "binned_tiny_share_fill", "categorical_new_and_missing"} <= names


def _cases():
    with open(DATA) as fh:
        return json.load(fh)["cases"]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_evidently_binning_reproduces_evidently(case):
    ref = _decode(case["reference"], case["kind"])
    cur = _decode(case["current"], case["kind"])
    assert abs(psi(ref, cur, binning="evidently", kind=case["kind"]) - case["psi"]) <= 1e-9
    assert abs(kl_divergence(ref, cur, binning="evidently", kind=case["kind"]) - case["kl_divergence"]) <= 1e-9


def test_evidently_and_default_binning_differ_in_general():
    case = [c for c in _cases() if c["name"] == "binned_normal_shift"][0]
    ref, cur = _decode(case["reference"], "numeric"), _decode(case["current"], "numeric")
    assert abs(psi(ref, cur) - case["psi"]) > 1e-6
