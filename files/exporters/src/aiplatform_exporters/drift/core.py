"""Population stability index and KL divergence, with bins fitted once.

Definitions (shares p = reference, q = current, one entry per bin)::

    PSI = sum((p - q) * ln(p / q))
    KL  = sum(p * ln(p / q))            # KL(reference || current), nats

Default scheme (``binning="quantile"``):

* numeric features: ``bins`` (10) quantile bins fitted ONCE on the reference
  (numpy's linear interpolation, identical to PostgreSQL's ``percentile_cont``).
  Only the interior edges are kept: the outer bins are open, so current values
  beyond the reference's range still land in the first or last bin. A value v
  falls in bin ``i = #edges <= v`` (bins are ``[e_i, e_i+1)``), which is what
  PostgreSQL's ``width_bucket(v, edges)`` returns, so the database can bin a
  window with ``GROUP BY`` and the result is the same as numpy's.
* categorical features: one bin per category seen in the reference (sorted) plus
  a last bin for categories the reference never had.
* NaN and +-inf are dropped before binning.
* smoothing: every share is floored at ``EPSILON`` (1e-4) and both vectors are
  renormalised to sum 1, for PSI and KL alike. The epsilon is fixed on purpose:
  with empty bins it dominates the value, so changing it changes the numbers.

Evidently-compatible scheme (``binning="evidently"``): reproduces Evidently
0.7's ``psi`` and ``kl_div`` stattests (pandas engine) to 1e-9: a numeric
reference with at most 20 distinct values is treated as categories (union of
both sides' values); otherwise equal-width Sturges bins over reference and
current combined; empty bins filled per side with 1e-4, or with the smallest
non-zero share / 1e6 when that share is <= 1e-4; PSI not renormalised after the
fill, KL renormalised (as ``scipy.stats.entropy``). Its edges move with every
window, so it needs the raw reference each time: use it to compare, not to
monitor.
"""

import math

import numpy as np

EPSILON = 1e-4
DEFAULT_BINS = 10
EVIDENTLY_CATEGORY_LIMIT = 20  # Evidently bins a numeric column only above this many distinct values
BINNINGS = ("quantile", "evidently")
KINDS = ("numeric", "categorical")


class DriftScore(object):
    """PSI and KL of one window, with the number of samples it held."""

    __slots__ = ("psi", "kl_divergence", "samples")

    def __init__(self, psi, kl_divergence, samples):
        self.psi = psi
        self.kl_divergence = kl_divergence
        self.samples = samples

    def __repr__(self):
        return "DriftScore(psi=%r, kl_divergence=%r, samples=%r)" % (self.psi, self.kl_divergence, self.samples)


# ---------------------------------------------------------------------------- helpers
def _is_numeric_array(arr):
    return arr.dtype.kind in "biuf"


def _as_array(values):
    if isinstance(values, np.ndarray):
        return values.ravel()
    if hasattr(values, "to_numpy"):  # pandas Series without importing pandas
        return np.asarray(values.to_numpy()).ravel()
    return np.asarray(list(values) if not isinstance(values, (list, tuple)) else values).ravel()


def _finite(values):
    arr = np.asarray(values, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def _categorical(values):
    arr = _as_array(values)
    if arr.dtype.kind == "f":
        arr = arr[np.isfinite(arr)]
    out = []
    for v in arr.tolist():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out.append(str(v) if not isinstance(v, str) else v)
    return np.asarray(out, dtype=object)


def _guess_kind(arr):
    return "numeric" if _is_numeric_array(arr) else "categorical"


def smoothed_shares(counts, epsilon=EPSILON):
    """counts -> shares floored at ``epsilon`` and renormalised to sum 1."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    if total <= 0:
        raise ValueError("no samples to compute shares from")
    shares = np.maximum(counts / total, epsilon)
    return shares / shares.sum()


def psi_from_shares(p, q):
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    return float(np.sum((p - q) * np.log(p / q)))


def kl_from_shares(p, q):
    """KL(p || q) in nats after renormalising both to sum 1 (as scipy.stats.entropy)."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    p = p / p.sum()
    q = q / q.sum()
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def quantile_edges(reference, bins=DEFAULT_BINS):
    """Interior quantile edges of ``reference`` (finite values), duplicates removed."""
    if int(bins) != bins or bins < 2:
        raise ValueError("bins must be an integer >= 2, got %r" % (bins,))
    ref = _finite(reference)
    if ref.size == 0:
        raise ValueError("the reference has no finite values")
    qs = np.linspace(0.0, 1.0, int(bins) + 1)[1:-1]
    return np.unique(np.quantile(ref, qs))


CHUNK = 1 << 18  # values binned at a time: memory stays a few MB whatever the window size


def numeric_counts(values, edges):
    """Counts per bin for ``len(edges) + 1`` bins, bin i = number of edges <= value.

    Works through ``values`` in chunks of CHUNK, so the extra memory does not
    grow with the number of values; non-finite values are skipped.
    """
    edges = np.asarray(edges, dtype=float)
    n_bins = edges.size + 1
    arr = np.asarray(values)
    if arr.dtype != np.float64:
        arr = arr.astype(np.float64)
    arr = arr.ravel()
    counts = np.zeros(n_bins, dtype=np.int64)
    few_edges = edges.size <= 64
    at_or_above = np.zeros(edges.size, dtype=np.int64)
    total = 0
    for start in range(0, arr.size, CHUNK):
        chunk = arr[start:start + CHUNK]
        finite = np.isfinite(chunk)
        if not finite.all():
            chunk = chunk[finite]
        if few_edges:
            # count values >= each edge (one vectorised comparison per edge, no index array):
            # bin i then holds (#>= e_i) - (#>= e_i+1), the same as searchsorted(side="right")
            total += chunk.size
            for i, edge in enumerate(edges):
                at_or_above[i] += np.count_nonzero(chunk >= edge)
        else:
            counts += np.bincount(np.searchsorted(edges, chunk, side="right"), minlength=n_bins)
    if few_edges:
        cumulative = np.concatenate([[total], at_or_above, [0]])
        counts = cumulative[:-1] - cumulative[1:]
    return counts


# ---------------------------------------------------------------------------- the baseline
class Baseline(object):
    """A reference distribution fitted once: bin edges (or categories) and shares.

    ``Baseline.fit(reference)`` computes everything from the reference;
    ``score(current)`` / ``score_counts(counts)`` then need only the current
    window, and ``counter()`` accumulates a window chunk by chunk so memory stays
    bounded by the number of bins, whatever the window size.
    """

    def __init__(self, kind, reference_shares, reference_samples, edges=None, categories=None,
                 epsilon=EPSILON, baseline_id=None, window_start=None, window_end=None):
        if kind not in KINDS:
            raise ValueError("kind must be one of %s, got %r" % (", ".join(KINDS), kind))
        self.kind = kind
        self.edges = None if edges is None else np.asarray(edges, dtype=float)
        self.categories = None if categories is None else [str(c) for c in categories]
        if kind == "numeric":
            if self.edges is None or self.edges.ndim != 1:
                raise ValueError("a numeric baseline needs a 1-d list of bin edges")
            if self.edges.size and (not np.all(np.isfinite(self.edges)) or np.any(np.diff(self.edges) <= 0)):
                raise ValueError("bin edges must be finite and strictly increasing")
            n_bins = self.edges.size + 1
        else:
            if self.categories is None:
                raise ValueError("a categorical baseline needs its categories")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError("categories must be unique")
            n_bins = len(self.categories) + 1
        shares = np.asarray(reference_shares, dtype=float)
        if shares.shape != (n_bins,):
            raise ValueError("expected %d reference shares, got %d" % (n_bins, shares.size))
        if not np.all(np.isfinite(shares)) or np.any(shares < 0) or abs(shares.sum() - 1.0) > 1e-6:
            raise ValueError("reference shares must be non-negative and sum to 1")
        if int(reference_samples) <= 0:
            raise ValueError("reference_samples must be positive")
        self.reference_shares = shares
        self.reference_samples = int(reference_samples)
        self.epsilon = float(epsilon)
        self.id = baseline_id
        self.window_start = window_start
        self.window_end = window_end
        self._index = None if self.categories is None else dict((c, i) for i, c in enumerate(self.categories))
        self._p = smoothed_shares(self.reference_shares, self.epsilon)

    @property
    def n_bins(self):
        return self.reference_shares.size

    @classmethod
    def fit(cls, reference, bins=DEFAULT_BINS, kind=None, epsilon=EPSILON):
        arr = _as_array(reference)
        kind = kind or _guess_kind(arr)
        if kind == "numeric":
            edges = quantile_edges(arr, bins)
            counts = numeric_counts(arr, edges)
            return cls.from_counts("numeric", counts, edges=edges, epsilon=epsilon)
        values = _categorical(arr)
        if values.size == 0:
            raise ValueError("the reference has no values")
        categories, counts = np.unique(values.astype(str), return_counts=True)
        return cls.from_counts("categorical", np.append(counts, 0), categories=list(categories), epsilon=epsilon)

    @classmethod
    def from_counts(cls, kind, counts, edges=None, categories=None, epsilon=EPSILON, **kw):
        counts = np.asarray(counts, dtype=float)
        total = counts.sum()
        if total <= 0:
            raise ValueError("the reference has no samples")
        return cls(kind, counts / total, int(round(total)), edges=edges, categories=categories,
                   epsilon=epsilon, **kw)

    # -- binning a window
    def counts(self, values):
        if self.kind == "numeric":
            return numeric_counts(values, self.edges)
        out = np.zeros(self.n_bins, dtype=np.int64)
        cats = _categorical(values)
        if cats.size:
            uniq, cnt = np.unique(cats.astype(str), return_counts=True)
            other = self.n_bins - 1
            for value, c in zip(uniq.tolist(), cnt.tolist()):
                out[self._index.get(value, other)] += c
        return out

    def counter(self):
        return BinCounter(self)

    # -- scoring
    def score_counts(self, counts):
        counts = np.asarray(counts, dtype=float)
        if counts.shape != (self.n_bins,):
            raise ValueError("expected %d bin counts, got %d" % (self.n_bins, counts.size))
        samples = int(round(counts.sum()))
        if samples == 0:
            return DriftScore(None, None, 0)
        q = smoothed_shares(counts, self.epsilon)
        return DriftScore(psi_from_shares(self._p, q), kl_from_shares(self._p, q), samples)

    def score(self, current):
        return self.score_counts(self.counts(current))

    def __repr__(self):
        return "Baseline(kind=%r, n_bins=%d, reference_samples=%d, id=%r)" % (
            self.kind, self.n_bins, self.reference_samples, self.id)


class BinCounter(object):
    """Accumulates bin counts over chunks of a window (memory: one int per bin)."""

    def __init__(self, baseline):
        self.baseline = baseline
        self.counts = np.zeros(baseline.n_bins, dtype=np.int64)

    def update(self, chunk):
        self.counts += self.baseline.counts(chunk)
        return self

    @property
    def samples(self):
        return int(self.counts.sum())

    def score(self):
        return self.baseline.score_counts(self.counts)


# ---------------------------------------------------------------------------- Evidently 0.7 scheme
def _evidently_fill(shares):
    shares = np.array(shares, dtype=float)
    nonzero = shares[shares != 0]
    if nonzero.size == 0:
        raise ValueError("no samples on one side")
    smallest = nonzero.min()
    fill = smallest / 10 ** 6 if smallest <= 0.0001 else 0.0001
    shares[shares == 0] = fill
    return shares


def evidently_shares(reference, current, kind=None):
    """Reference and current shares exactly as Evidently 0.7's ``get_binned_data``."""
    ref_arr = _as_array(reference)
    cur_arr = _as_array(current)
    kind = kind or _guess_kind(ref_arr)
    if kind == "numeric":
        ref = _finite(ref_arr)
        cur = _finite(cur_arr)
        if ref.size == 0 or cur.size == 0:
            raise ValueError("both sides need at least one finite value")
        if np.unique(ref).size > EVIDENTLY_CATEGORY_LIMIT:
            edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
            p = np.histogram(ref, edges)[0] / ref.size
            q = np.histogram(cur, edges)[0] / cur.size
            return _evidently_fill(p), _evidently_fill(q)
        ref_keys, ref_counts = np.unique(ref, return_counts=True)
        cur_keys, cur_counts = np.unique(cur, return_counts=True)
        n_ref, n_cur = ref.size, cur.size
    else:
        ref_c = _categorical(ref_arr).astype(str)
        cur_c = _categorical(cur_arr).astype(str)
        if ref_c.size == 0 or cur_c.size == 0:
            raise ValueError("both sides need at least one value")
        ref_keys, ref_counts = np.unique(ref_c, return_counts=True)
        cur_keys, cur_counts = np.unique(cur_c, return_counts=True)
        n_ref, n_cur = ref_c.size, cur_c.size
    keys = sorted(set(ref_keys.tolist()) | set(cur_keys.tolist()))
    rmap = dict(zip(ref_keys.tolist(), ref_counts.tolist()))
    cmap = dict(zip(cur_keys.tolist(), cur_counts.tolist()))
    p = np.array([rmap.get(k, 0) / n_ref for k in keys], dtype=float)
    q = np.array([cmap.get(k, 0) / n_cur for k in keys], dtype=float)
    return _evidently_fill(p), _evidently_fill(q)


# ---------------------------------------------------------------------------- public functions
def _shares(reference, current, binning, bins, epsilon, kind):
    if binning == "evidently":
        return evidently_shares(reference, current, kind=kind)
    if binning != "quantile":
        raise ValueError("binning must be one of %s, got %r" % (", ".join(BINNINGS), binning))
    baseline = Baseline.fit(reference, bins=bins, kind=kind, epsilon=epsilon)
    counts = baseline.counts(current)
    if counts.sum() == 0:
        raise ValueError("the current data has no usable values")
    return baseline._p, smoothed_shares(counts, epsilon)


def drift_scores(reference, current, binning="quantile", bins=DEFAULT_BINS, epsilon=EPSILON, kind=None):
    """(psi, kl_divergence) with one binning pass."""
    p, q = _shares(reference, current, binning, bins, epsilon, kind)
    return psi_from_shares(p, q), kl_from_shares(p, q)


def psi(reference, current, binning="quantile", bins=DEFAULT_BINS, epsilon=EPSILON, kind=None):
    """Population stability index of ``current`` against ``reference``.

    ``binning="quantile"`` (default): ``bins`` quantile bins fitted on the
    reference, open outer bins, shares floored at ``epsilon`` and renormalised.
    ``binning="evidently"``: Evidently 0.7's numbers (``bins``/``epsilon`` unused).
    ``kind`` is "numeric" or "categorical" (guessed from the dtype when omitted).
    """
    p, q = _shares(reference, current, binning, bins, epsilon, kind)
    return psi_from_shares(p, q)


def kl_divergence(reference, current, binning="quantile", bins=DEFAULT_BINS, epsilon=EPSILON, kind=None):
    """KL(reference || current) in nats; same binning options as :func:`psi`."""
    p, q = _shares(reference, current, binning, bins, epsilon, kind)
    return kl_from_shares(p, q)
