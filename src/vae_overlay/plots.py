"""Figures shared by the notebooks: image grids and saving to results/figures."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def save_figure(fig, name: str, figures_dir: str | Path = "../results/figures", dpi: int = 100) -> Path:
    """Save `fig` as `<figures_dir>/<name>.png` and return the path."""
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def image_grid(images, titles=None, ncols: int = 8, size: float = 1.4, cmap: str = "gray"):
    """Show images (n, h, w[, 1]) in a grid with optional titles; returns the figure."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0]
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap, vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=7)
    fig.tight_layout()
    return fig
