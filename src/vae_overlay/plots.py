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


def latent_scatter(ax, means, box=None, dims=(0, 1), names=None, **scatter_kwargs):
    """Scatter latent means on `ax` (dims of z), with the paper's sampling box dashed if given."""
    means = np.asarray(means)
    style = {"s": 14, "c": "tab:blue", "alpha": 0.8, **scatter_kwargs}
    ax.scatter(means[:, dims[0]], means[:, dims[1]], **style)
    if box is not None:
        (x0, x1), (y0, y1) = box
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", color="gray",
                                   label="paper's sampling region"))
    if names is not None:
        for (x, y), name in zip(means[:, list(dims)], names):
            ax.annotate(str(name), (x, y), fontsize=5, alpha=0.7)
    ax.set_xlabel(f"z{dims[0] + 1}")
    ax.set_ylabel(f"z{dims[1] + 1}")
    ax.axhline(0, color="k", lw=0.5, alpha=0.3)
    ax.axvline(0, color="k", lw=0.5, alpha=0.3)
    return ax


def thumbnails_at(ax, images, points, size, dims=(0, 1), cmap: str = "gray"):
    """Draw each image (n, h, w[, 1]) centred at its point, `size` latent units wide (or (width, height))."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0]
    points = np.asarray(points)[:, list(dims)]
    width, height = (size, size) if np.isscalar(size) else size
    for image, (x, y) in zip(images, points):
        ax.imshow(image, cmap=cmap, vmin=0, vmax=1, interpolation="nearest", zorder=2,
                  extent=(x - width / 2, x + width / 2, y - height / 2, y + height / 2))
    ax.set_xlim(points[:, 0].min() - width, points[:, 0].max() + width)
    ax.set_ylim(points[:, 1].min() - height, points[:, 1].max() + height)
    ax.set_aspect("equal" if width == height else "auto")
    ax.set_xlabel(f"z{dims[0] + 1}")
    ax.set_ylabel(f"z{dims[1] + 1}")
    return ax


def decoded_grid(ax, tiles, z1_values, z2_values, cmap: str = "gray"):
    """Show decoded tiles (n1, n2, h, w) as one picture with axes in latent units (z2 grows upwards)."""
    tiles = np.asarray(tiles)
    n1, n2, h, w = tiles.shape[:4]
    canvas = np.zeros((n2 * h, n1 * w), dtype=tiles.dtype)
    for i in range(n1):
        for j in range(n2):
            canvas[(n2 - 1 - j) * h:(n2 - j) * h, i * w:(i + 1) * w] = tiles[i, j].reshape(h, w)
    dz1 = (z1_values[-1] - z1_values[0]) / max(n1 - 1, 1)
    dz2 = (z2_values[-1] - z2_values[0]) / max(n2 - 1, 1)
    extent = (z1_values[0] - dz1 / 2, z1_values[-1] + dz1 / 2, z2_values[0] - dz2 / 2, z2_values[-1] + dz2 / 2)
    vmax = 255 if canvas.dtype == np.uint8 else 1
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=vmax, extent=extent, interpolation="nearest", aspect="auto")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    return ax
