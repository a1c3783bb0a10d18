"""The statistics every study verdict uses, in one place: shares with 95 % Wilson intervals, t intervals of means,
paired comparisons (mean difference, interval, paired t-test, units improved) and Holm's correction for a family of
p-values. The study kinds and `vae_overlay.findings` call these; none of them computes an interval of its own."""
from __future__ import annotations

import numpy as np
from scipy import stats


def wilson(hits: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson interval of a share `hits` of `n` (scipy.stats.binomtest)."""
    interval = stats.binomtest(int(hits), int(n)).proportion_ci(method="wilson")
    return float(interval.low), float(interval.high)


def holm(p_values) -> list[float]:
    """Holm's step-down adjustment of p-values for the family they form (NaN stays NaN, results capped at 1): the
    k-th smallest p is multiplied by (m - k + 1), and each adjusted value is at least the one before it."""
    p_values = np.asarray(p_values, np.float64)
    finite = np.flatnonzero(np.isfinite(p_values))
    adjusted = np.full(len(p_values), np.nan)
    running = 0.0
    for rank, index in enumerate(finite[np.argsort(p_values[finite], kind="stable")]):
        running = max(running, min(1.0, (len(finite) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """The `confidence` t interval of the mean of the finite `values`: NaN for fewer than two, the mean itself at both
    ends when they do not spread (every run the same)."""
    values = np.asarray(values, np.float64).ravel()
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * sd / np.sqrt(len(values)) if sd > 0 else 0.0
    return mean - half, mean + half


def paired_comparison(baseline, other, confidence: float = 0.95) -> dict:
    """Paired comparison of `other` against `baseline` (same seeds): mean difference, its t-based
    confidence interval and the two-sided paired t-test p-value (scipy.stats.ttest_rel), and how many
    pairs improved. Identical differences (no spread) give t = 0, p = 1 if zero, else t = +-inf, p = 0."""
    baseline = np.asarray(baseline, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if baseline.shape != other.shape or baseline.ndim != 1 or len(baseline) < 2:
        raise ValueError("need two 1-D arrays of the same length >= 2 (one value per seed)")
    differences = other - baseline
    mean, std = float(differences.mean()), float(differences.std(ddof=1))
    low, high = t_interval(differences, confidence)
    if std == 0:
        t_value = 0.0 if mean == 0 else float(np.copysign(np.inf, mean))
        p_value = 1.0 if mean == 0 else 0.0
    else:
        test = stats.ttest_rel(other, baseline)
        t_value, p_value = float(test.statistic), float(test.pvalue)
    return {"n": len(differences), "mean_difference": mean, "std_difference": std, "ci_low": float(low),
            "ci_high": float(high), "t": t_value, "p_value": p_value, "improved": int((differences > 0).sum())}
