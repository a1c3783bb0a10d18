"""The overlay methods, each once: its key, its name in the study tables, its label in the
explorer's menu, what it combines (and so whether it needs a trained model) and how.

Notebook 05's experiment (`overlay_experiment.method_overlay`), the Section 4 study
(`overlay_study`), the overlay explorer (`overlay_explorer`) and the bulk generator
(`overlay.generate_overlays`) take their methods from `METHODS` and combine through `combine`; they
differ only in where the combined items come from (a run's cluster centres or the sources, moved by
the explorer's per-source weights, decoded eagerly or by a compiled decoder).

A method combines one of three kinds of items (`Method.space`):

* "latent": the sources' latent vectors, into one vector (`overlay_latent`) that is then decoded;
* "decoded": each source's decoded latent vector, in pixels (`pixel_overlay`);
* "pixel": the source images themselves (`pixel_overlay`): the baselines, no model needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPACES = ("latent", "decoded", "pixel")
AROUND_Z_BG = ("offset", "weighted")  # the latent rules that add offsets from z_bg (others: from 0)


@dataclass(frozen=True)
class Method:
    """One overlay method: `key` (what code passes: the explorer's menu value, generate_overlays'
    method), `name` (the study tables' column part `<score>|<name>|<overlay>`, as REPORT shows it),
    `label` (the explorer's menu entry), `space` (one of SPACES: what it combines) and `rule` (how:
    a rule of `overlay_latent` for the latent methods, of `pixel_overlay` for the others)."""

    key: str
    name: str
    label: str
    space: str
    rule: str

    def __post_init__(self):
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")

    @property
    def needs_model(self) -> bool:
        """Whether the method needs a trained model (its items: latent vectors or their decodes)."""
        return self.space != "pixel"

    @property
    def around_z_bg(self) -> bool:
        """Whether the method adds the sources' offsets from z_bg (other latent methods: from 0)."""
        return self.space == "latent" and self.rule in AROUND_Z_BG


METHODS = {
    found.key: found
    for found in (
        Method("sum", "latent sum", "latent sum (paper)", "latent", "sum"),
        Method("mean", "latent mean", "latent mean", "latent", "mean"),
        Method("offset", "offset", "offset sum: z_bg + Σ(z_i − z_bg)", "latent", "offset"),
        Method(
            "weighted", "weighted", "weighted offset: z_bg + w·Σ(z_i − z_bg)", "latent", "weighted"
        ),
        Method(
            "composite",
            "decoded composite",
            "decoded compositing (darkest decoded pixel)",
            "decoded",
            "darkest",
        ),
        Method("pixel mean", "pixel mean", "pixel mean (baseline)", "pixel", "mean"),
        Method("pixel darkest", "pixel darkest", "pixel compositing (darkest)", "pixel", "darkest"),
    )
}
LATENT_METHODS = tuple(key for key, found in METHODS.items() if found.space == "latent")


def lookup(key: str) -> Method:
    """The method of a key of `METHODS`; a ValueError naming the keys for any other."""
    if key not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {key!r}")
    return METHODS[key]


def overlay_latent(
    z_sources, method: str = "sum", z_background=None, weight: float = 1.0
) -> np.ndarray:
    """One latent vector for the overlay of the sources' latent vectors z_sources (k, d).

    sum: the paper's sum of the vectors; mean: their average; offset: z_bg + sum(z_i - z_bg), the
    sum of each source's offset from a common background vector; weighted: z_bg + weight *
    sum(z_i - z_bg) (weight 1 is "offset"; with z_bg = 0, weight 1 is "sum" and weight 1/k is
    "mean").
    """
    z_sources = np.asarray(z_sources, np.float64)
    if method == "sum":
        return z_sources.sum(axis=0)
    if method == "mean":
        return z_sources.mean(axis=0)
    if method in AROUND_Z_BG:
        if z_background is None:
            z_bg = np.zeros(z_sources.shape[1])
        else:
            z_bg = np.asarray(z_background, np.float64)
        scale = 1.0 if method == "offset" else float(weight)
        return z_bg + scale * (z_sources - z_bg).sum(axis=0)
    raise ValueError(f"method must be one of {LATENT_METHODS}, got {method!r}")


def pixel_overlay(sources, method: str) -> np.ndarray:
    """Images combined in pixels: their 'mean' or 'darkest' (compositing: darkest pixel wins)."""
    sources = np.asarray(sources, np.float32)
    if method == "mean":
        return sources.mean(axis=0)
    if method == "darkest":
        return sources.min(axis=0)
    raise ValueError(f"pixel method must be 'mean' or 'darkest', got {method!r}")


def combine(key: str, items, z_background=None, weight: float = 1.0) -> np.ndarray:
    """The overlay of stacked `items` by the method `key`: for a latent method the items are latent
    vectors (k, d) and the result the one latent vector to decode (`z_background` and `weight` as
    `overlay_latent` takes them); for the others the items are images (k, s, s, 1) and the result
    the overlay image."""
    found = lookup(key)
    if found.space == "latent":
        return overlay_latent(items, found.rule, z_background, weight)
    return pixel_overlay(items, found.rule)
