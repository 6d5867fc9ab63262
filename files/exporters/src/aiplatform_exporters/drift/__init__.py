"""Drift library: PSI and KL divergence with bins fitted once on the reference.

    >>> from aiplatform_exporters.drift import psi, kl_divergence
    >>> psi(reference, current)                        # 10 quantile bins fitted on the reference
    >>> psi(reference, current, binning="evidently")   # Evidently 0.7's numbers
    >>> kl_divergence(reference, current)              # KL(reference || current), nats

Only numpy is needed here; the PostgreSQL parts live in
``aiplatform_exporters.drift.store`` and the exporter in ``.exporter``.
"""

from aiplatform_exporters.drift.core import (  # noqa: F401
    BINNINGS,
    DEFAULT_BINS,
    EPSILON,
    KINDS,
    Baseline,
    BinCounter,
    DriftScore,
    drift_scores,
    evidently_shares,
    kl_divergence,
    kl_from_shares,
    psi,
    psi_from_shares,
    quantile_edges,
    smoothed_shares,
)

__all__ = [
    "BINNINGS", "DEFAULT_BINS", "EPSILON", "KINDS", "Baseline", "BinCounter", "DriftScore", "drift_scores",
    "evidently_shares", "kl_divergence", "kl_from_shares", "psi", "psi_from_shares", "quantile_edges",
    "smoothed_shares",
]
