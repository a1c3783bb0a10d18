"""The statistics every study verdict uses, in one place: shares with 95 % Wilson intervals, t
intervals of means, paired differences and comparisons (mean difference, interval, paired t-test,
units improved), equivalence (TOST) and the minimum detectable effect, Holm's correction for a
family of p-values, and the verdict words with the rule that turns an interval into one
(`verdict`). The study kinds and `vae_overlay.findings` call these; none of them computes an
interval or words a verdict of its own: `findings` owns the claims and their rules, this module
the arithmetic and the words."""

from __future__ import annotations

import numpy as np
from scipy import stats

HOLDS, FAILS, NOT_SUPPORTED, UNDECIDED = "holds", "fails", "not supported", "undecided"
VERDICTS = (HOLDS, FAILS, NOT_SUPPORTED, UNDECIDED)  # the words of a claim's verdict
BETTER, WORSE = "better", "worse"  # the words of one comparison with a baseline
TOO_FEW = "too few runs"  # a comparison with fewer than two pairs


def wilson(hits: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson interval of a share `hits` of `n` (scipy.stats.binomtest)."""
    interval = stats.binomtest(int(hits), int(n)).proportion_ci(method="wilson")
    return float(interval.low), float(interval.high)


def holm(p_values) -> list[float]:
    """Holm's step-down adjustment of p-values for the family they form (NaN stays NaN, results
    capped at 1): the k-th smallest p is multiplied by (m - k + 1), and each adjusted value is at
    least the one before it."""
    p_values = np.asarray(p_values, np.float64)
    finite = np.flatnonzero(np.isfinite(p_values))
    adjusted = np.full(len(p_values), np.nan)
    running = 0.0
    for rank, index in enumerate(finite[np.argsort(p_values[finite], kind="stable")]):
        running = max(running, min(1.0, (len(finite) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """The `confidence` t interval of the mean of the finite `values`: NaN for fewer than two, the
    mean itself at both ends when they do not spread (every run the same)."""
    values = np.asarray(values, np.float64).ravel()
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    half = (
        stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * sd / np.sqrt(len(values))
        if sd > 0
        else 0.0
    )
    return mean - half, mean + half


def mean_above(values, threshold: float) -> float:
    """The one-sided t-test's p-value that the mean of `values` lies above `threshold`; 1 for
    values that do not spread (no test is possible)."""
    values = np.asarray(values, np.float64)
    if values.std() == 0:
        return 1.0
    return float(stats.ttest_1samp(values, threshold, alternative="greater").pvalue)


def paired_differences(baseline, other) -> np.ndarray:
    """`other - baseline` pair by pair (flattened, float64), the pairs where either value is missing
    (not finite) left out: the units a paired comparison counts."""
    differences = (np.asarray(other, np.float64) - np.asarray(baseline, np.float64)).ravel()
    return differences[np.isfinite(differences)]


def paired_comparison(baseline, other, confidence: float = 0.95) -> dict:
    """Paired comparison of `other` against `baseline` (same seeds; `paired_differences`): mean
    difference, its t-based confidence interval and the two-sided paired t-test p-value, and how
    many pairs improved. Identical differences (no spread) give t = 0, p = 1 if zero, else
    t = +-inf, p = 0."""
    baseline = np.asarray(baseline, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if baseline.shape != other.shape or baseline.ndim != 1 or len(baseline) < 2:
        raise ValueError("need two 1-D arrays of the same length >= 2 (one value per seed)")
    differences = paired_differences(baseline, other)
    if len(differences) < 2:
        raise ValueError("need at least two pairs with both values")
    mean, std = float(differences.mean()), float(differences.std(ddof=1))
    low, high = t_interval(differences, confidence)
    if std == 0:
        t_value = 0.0 if mean == 0 else float(np.copysign(np.inf, mean))
        p_value = 1.0 if mean == 0 else 0.0
    else:
        test = stats.ttest_1samp(differences, 0.0)  # scipy's ttest_rel(other, baseline)
        t_value, p_value = float(test.statistic), float(test.pvalue)
    return {
        "n": len(differences),
        "mean_difference": mean,
        "std_difference": std,
        "ci_low": float(low),
        "ci_high": float(high),
        "t": t_value,
        "p_value": p_value,
        "improved": int((differences > 0).sum()),
    }


def equivalence(differences, margin: float, alpha: float = 0.05) -> dict:
    """TOST, two one-sided t-tests of paired `differences` against -margin and +margin: `p`, the
    larger one-sided p-value (equivalent within +-margin at level alpha when p < alpha), and the
    (1 - 2 alpha) t interval (`low`, `high`), which lies inside +-margin exactly when TOST says
    equivalent. Differences that do not spread are equivalent exactly when they lie inside the
    margin (p 0, else 1)."""
    differences = np.asarray(differences, np.float64)
    if differences.std(ddof=1) == 0:
        p_value = 0.0 if abs(differences.mean()) < margin else 1.0
    else:
        p_value = max(
            stats.ttest_1samp(differences, -margin, alternative="greater").pvalue,
            stats.ttest_1samp(differences, margin, alternative="less").pvalue,
        )
    low, high = t_interval(differences, 1 - 2 * alpha)
    return {"p": float(p_value), "low": low, "high": high}


def minimum_detectable_effect(n: int, sd: float, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true mean difference that a two-sided paired t-test at level `alpha` detects
    with probability `power` over `n` pairs whose differences spread by `sd`."""
    quantiles = stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)
    return float(quantiles * sd / np.sqrt(n))


def word(held: bool, failed: bool, neither: str = UNDECIDED) -> str:
    """A verdict word from a rule's two outcomes: HOLDS if it held, FAILS if it failed, else
    `neither` (UNDECIDED, or NOT_SUPPORTED where the rule cannot decide by design)."""
    if held:
        return HOLDS
    return FAILS if failed else neither


def verdict(
    low: float,
    high: float,
    threshold: float = 0.0,
    *,
    words=(HOLDS, FAILS),
    equivalent_within: str | None = None,
) -> str:
    """The word for an interval [low, high] against `threshold`: words[0] when it lies above,
    words[1] when below, UNDECIDED when it contains the threshold (or is NaN). Where an equivalence
    test against a margin succeeded, `equivalent_within` names the margin ("within ±2 pp"): an
    interval containing the threshold is then "equivalent within ...", and one off it says
    "<word>, but within ..."."""
    if low > threshold or high < threshold:
        side = words[0] if low > threshold else words[1]
        return f"{side}, but {equivalent_within}" if equivalent_within else side
    return f"equivalent {equivalent_within}" if equivalent_within else UNDECIDED
