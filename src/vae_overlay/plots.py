"""Figures shared by the notebooks: image grids, latent-space pictures, a forest plot, labels placed
apart, saving to results/figures.

Figures are judged at a glance, so the helpers keep text at 9 pt or more, separate image tiles by
gutters, and never draw markers over the images they explain (the latent means get a panel of their
own). `illegible` checks a figure as a reader sees it on GitHub (at most `PAGE_WIDTH` pixels wide):
text too small, text over text."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.text import Text
from matplotlib.transforms import Bbox


def save_figure(
    fig, name: str, figures_dir: str | Path = "../results/figures", dpi: int = 100
) -> Path:
    """Save `fig` as `<figures_dir>/<name>.png` and return the path."""
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


PAGE_WIDTH = 900  # pixels: about the width GitHub gives a picture in a README or notebook


def _texts(fig):
    """The visible, non-empty texts of a drawn `fig` with their boxes in display pixels (tick labels
    only where the axis is drawn and the tick lies in its view: matplotlib keeps labels of the other
    ticks, undrawn)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ticks, texts = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * (high - low)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                ticks.update((id(tick.label1), id(tick.label2)))
                if (
                    ax.axison
                    and axis.get_visible()
                    and low - slack <= tick.get_loc() <= high + slack
                ):
                    texts += [tick.label1, tick.label2]
    texts += [t for t in fig.findobj(Text) if id(t) not in ticks]
    return [
        (t, Text.get_window_extent(t, renderer))
        for t in texts
        if t.get_visible() and t.get_text().strip() and t.get_fontsize() > 0
    ]


def shown_sizes(fig, dpi: int = 80, width: int = PAGE_WIDTH) -> list[tuple[str, float]]:
    """(text, points) of every visible text of `fig` as a reader sees it when the figure, saved by
    `save_figure` at `dpi`, is shown at most `width` pixels wide: a wider picture is scaled down,
    and its text with it."""
    texts = _texts(fig)
    box = fig.get_tightbbox(fig.canvas.get_renderer())
    saved = (box.width + 0.2) * dpi  # bbox_inches="tight" pads 0.1 inch on each side
    scale = min(1.0, width / saved)
    return [(t.get_text(), t.get_fontsize() * scale) for t, _ in texts]


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of visible texts of `fig` whose boxes overlap by more than a pixel (text written over
    text)."""
    boxes = [(t.get_text(), b.expanded(1, 1).padded(-1)) for t, b in _texts(fig)]
    return [
        (a, c)
        for i, (a, box) in enumerate(boxes)
        for c, other in boxes[i + 1 :]
        if box.overlaps(other)
    ]


def illegible(fig, dpi: int = 80, width: int = PAGE_WIDTH, smallest: float = 9) -> list[str]:
    """What keeps `fig` from being read on GitHub: each text shown under `smallest` points
    (`shown_sizes`) and each pair of texts written over each other (`overlapping_texts`); [] for a
    legible figure."""
    small = [
        f"{text!r} at {size:.1f} pt"
        for text, size in shown_sizes(fig, dpi, width)
        if size < smallest - 1e-6
    ]
    return small + [f"{a!r} over {b!r}" for a, b in overlapping_texts(fig)]


def place_labels(ax, points, texts, avoid=(), distance: float = 8, **style) -> list:
    """Write each text next to its point (data coordinates) where it covers no label already placed,
    no point of `points` or `avoid` (a marker's box, `distance` points wide) and stays inside the
    axes: the first free place among eight around the point (up-right first), then eight twice and
    three times as far, else the up-right one. Pass a leader line in `style` (arrowprops) for the
    far ones. Call it once the layout is final (after tight_layout): the places are found in display
    pixels. `style` goes to `ax.annotate` (font size, colour, a bbox ...). Returns the
    annotations."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_pixels = ax.transData.transform
    reach = distance * fig.dpi / 72
    points = np.reshape(points, (-1, 2))
    markers = [
        Bbox.from_bounds(x - reach, y - reach, 2 * reach, 2 * reach)
        for x, y in to_pixels(np.concatenate([points, np.reshape(avoid, (-1, 2))]))
    ]
    frame = ax.get_window_extent(renderer)
    taken, placed = list(markers), []
    around = [
        (r * dx, r * dy)
        for r in (1, 2, 3)
        for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.3), (0, -1.3), (1.3, 0), (-1.3, 0))
    ]
    for point, text in zip(points, texts):
        for dx, dy in around:
            side = {
                "ha": {1: "left", -1: "right"}.get(int(np.sign(dx)), "center"),
                "va": {1: "bottom", -1: "top"}.get(int(np.sign(dy)), "center"),
            }
            offset = (dx * distance, dy * distance)
            label = ax.annotate(
                text, point, xytext=offset, textcoords="offset points", **side, **style
            )
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer)  # the text's own box: no leader line
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(other) for other in taken):
                break
            label.remove()
        else:
            label = ax.annotate(
                text, point, xytext=(distance, distance), textcoords="offset points", **style
            )
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer)
        taken.append(box)
        placed.append(label)
    return placed


def image_grid(
    images,
    titles=None,
    ncols: int = 8,
    size: float = 1.4,
    cmap: str = "gray",
    row_labels=None,
    fontsize: float = 9,
):
    """Show images (n, h, w[, 1]) in a grid with optional titles; returns the figure.

    `row_labels` (one per grid row) are written left of each row, horizontally (use "\\n" to wrap a
    long one); titles and row labels use `fontsize` points (9 or more stays readable in a saved
    80-dpi figure)."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0]
    n = len(images)
    if n == 0:
        raise ValueError("image_grid got no images to show")
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"{len(row_labels)} row labels for {nrows} rows of {ncols} images")
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(images[i], cmap=cmap, vmin=0, vmax=1)
        ax.set_xticks([])  # not axis("off"): that would hide the row label (the y label) too
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=fontsize)
    for row, label in enumerate(row_labels or []):
        axes[row, 0].set_ylabel(
            str(label), rotation=0, ha="right", va="center", fontsize=fontsize, labelpad=8
        )
    fig.tight_layout()
    return fig


def latent_scatter(ax, means, box=None, dims=(0, 1), names=None, **scatter_kwargs):
    """Scatter latent means on `ax` (dims of z), with the paper's sampling box dashed if given."""
    means = np.asarray(means)
    style = {"s": 14, "c": "tab:blue", "alpha": 0.8, **scatter_kwargs}
    ax.scatter(means[:, dims[0]], means[:, dims[1]], **style)
    if box is not None:
        (x0, x1), (y0, y1) = box
        ax.add_patch(
            plt.Rectangle(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                fill=False,
                ls="--",
                color="gray",
                label="paper's sampling region",
            )
        )
    if names is not None:
        for (x, y), name in zip(means[:, list(dims)], names):
            ax.annotate(str(name), (x, y), fontsize=5, alpha=0.7)
    ax.set_xlabel(f"z{dims[0] + 1}")
    ax.set_ylabel(f"z{dims[1] + 1}")
    ax.axhline(0, color="k", lw=0.5, alpha=0.3)
    ax.axvline(0, color="k", lw=0.5, alpha=0.3)
    return ax


def thumbnails_at(ax, images, points, size, dims=(0, 1), cmap: str = "gray"):
    """Draw each image (n, h, w[, 1]) centred at its point, `size` latent units wide (or (width,
    height))."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0]
    points = np.asarray(points)[:, list(dims)]
    width, height = (size, size) if np.isscalar(size) else size
    for image, (x, y) in zip(images, points):
        ax.imshow(
            image,
            cmap=cmap,
            vmin=0,
            vmax=1,
            interpolation="nearest",
            zorder=2,
            extent=(x - width / 2, x + width / 2, y - height / 2, y + height / 2),
        )
    ax.set_xlim(points[:, 0].min() - width, points[:, 0].max() + width)
    ax.set_ylim(points[:, 1].min() - height, points[:, 1].max() + height)
    ax.set_aspect("equal" if width == height else "auto")
    ax.set_xlabel(f"z{dims[0] + 1}")
    ax.set_ylabel(f"z{dims[1] + 1}")
    return ax


def _spacing(values) -> float:
    """The distance between neighbouring grid values (1.0 for a single value, so a lone tile still
    has a width)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2 or values[-1] == values[0]:
        return 1.0
    return float((values[-1] - values[0]) / (len(values) - 1))


def _tick_text(value: float) -> str:
    """A tick label: at most two decimals, no trailing zeros, never "-0"."""
    return f"{float(np.round(value, 2)) + 0.0:g}"


def decoded_grid(
    ax, tiles, z1_values, z2_values, cmap: str = "gray", gutter: int = 0, gutter_color="white"
):
    """Show decoded tiles (n1, n2, h, w) as one picture with axes in latent units (z2 grows
    upwards).

    Tile [i, j] is centred on (z1_values[i], z2_values[j]). With `gutter` > 0, lines of that many
    pixels of `gutter_color` (any matplotlib colour) separate neighbouring tiles and frame the
    picture, so each tile reads as one image; the picture is then drawn in RGB (grey levels through
    `cmap`, uint8 tiles scaled by 255) and the tile centres stay on their latent coordinates.
    Returns `ax`."""
    tiles = np.asarray(tiles)
    n1, n2, h, w = tiles.shape[:4]
    tiles = tiles.reshape(n1, n2, h, w)
    vmax = 255 if tiles.dtype == np.uint8 else 1
    g = max(0, int(gutter))
    if g:
        pictures = plt.get_cmap(cmap)(np.clip(tiles / vmax, 0, 1))[..., :3]
        canvas = np.empty((n2 * (h + g) + g, n1 * (w + g) + g, 3))
        canvas[:] = to_rgb(gutter_color)
    else:
        pictures, canvas = tiles, np.zeros((n2 * h, n1 * w), dtype=tiles.dtype)
    for i in range(n1):
        for j in range(n2):
            top, left = g + (n2 - 1 - j) * (h + g), g + i * (w + g)
            canvas[top : top + h, left : left + w] = pictures[i, j]
    dz1, dz2 = _spacing(z1_values), _spacing(z2_values)
    # half a tile + half a gutter
    pad1, pad2 = (dz1 * (0.5 + g / (2 * (w + g))), dz2 * (0.5 + g / (2 * (h + g))))
    extent = (z1_values[0] - pad1, z1_values[-1] + pad1, z2_values[0] - pad2, z2_values[-1] + pad2)
    style = {} if g else {"cmap": cmap, "vmin": 0, "vmax": vmax}
    ax.imshow(canvas, extent=extent, interpolation="nearest", aspect="auto", **style)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    return ax


def latent_grid_figure(
    tiles,
    z1_values,
    z2_values,
    means=None,
    title: str | None = None,
    gutter: int | None = None,
    gutter_color="white",
    tile_inches: float = 0.6,
    means_width: float = 0.6,
    cmap: str = "gray",
    max_ticks: int = 9,
    fontsize: float = 10,
):
    """Figure 3 made readable: decoded tiles (n1, n2, h, w) separated by gutters (`decoded_grid`;
    `gutter` pixels, by default h / 16 and at least 2) and, when `means` (n, >= 2) are given, the
    training images' latent means in their own panel to the right: the same z1/z2 range and aspect
    (square tile pixels), faint lines at the tile borders so a mean can be matched to its tile, and
    no marker covering a tile. Means outside the range are counted in that panel's title. Ticks sit
    on tile centres (at most `max_ticks` per axis), text is `fontsize` points (tick labels one
    less). `tile_inches` is a tile's width; the means panel is `means_width` times as wide as the
    grid. Returns the figure; its axes are (grid, means) or (grid,)."""
    tiles = np.asarray(tiles)
    n1, n2, h, w = tiles.shape[:4]
    g = max(2, round(h / 16)) if gutter is None else max(0, int(gutter))
    ratios = [1.0] if means is None else [1.0, means_width]
    grid_width, grid_height = n1 * tile_inches, n2 * tile_inches * (h + g) / (w + g)
    fig, axes = plt.subplots(
        1,
        len(ratios),
        figsize=(grid_width * sum(ratios) + 1.8, grid_height + 1.4),
        squeeze=False,
        gridspec_kw={"width_ratios": ratios},
    )
    axes = list(axes[0])
    decoded_grid(
        axes[0], tiles, z1_values, z2_values, cmap=cmap, gutter=g, gutter_color=gutter_color
    )
    x0, x1, y0, y1 = axes[0].images[0].get_extent()
    dz1, dz2 = _spacing(z1_values), _spacing(z2_values)
    if means is not None:
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 2 or means.shape[1] < 2:
            raise ValueError(f"means must have shape (n, 2 or more), not {means.shape}")
        latent_scatter(axes[1], means, s=12, c="tab:red", alpha=0.7)
        inside = (
            (means[:, 0] >= x0) & (means[:, 0] <= x1) & (means[:, 1] >= y0) & (means[:, 1] <= y1)
        )
        outside = f"; {int((~inside).sum())} outside this range" if not inside.all() else ""
        axes[1].set_title(f"training means ({len(means)}{outside})", fontsize=fontsize)
        axes[1].set_xticks(np.asarray(z1_values[0]) - dz1 / 2 + dz1 * np.arange(n1 + 1), minor=True)
        axes[1].set_yticks(np.asarray(z2_values[0]) - dz2 / 2 + dz2 * np.arange(n2 + 1), minor=True)
        axes[1].grid(which="minor", color="0.85", lw=0.6)
        axes[1].tick_params(which="minor", length=0)
    for ax in axes:
        for values, set_ticks in (
            (np.asarray(z1_values), ax.set_xticks),
            (np.asarray(z2_values), ax.set_yticks),
        ):
            shown = values[:: int(np.ceil(len(values) / max(1, max_ticks)))]
            set_ticks(shown, [_tick_text(v) for v in shown])
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect(dz1 * (h + g) / (dz2 * (w + g)))
        ax.tick_params(labelsize=fontsize - 1)
        ax.xaxis.label.set_size(fontsize)
        ax.yaxis.label.set_size(fontsize)
    if title:
        axes[0].set_title(title, fontsize=fontsize)
    fig.tight_layout()
    return fig


def forest(
    labels,
    estimates,
    lows,
    highs,
    references=None,
    zero: float | None = 0.0,
    zero_label: str | None = None,
    xlabel: str = "",
    title: str | None = None,
    annotate: str | None = "{:+.1f} [{:+.1f}, {:+.1f}]",
    fontsize: float = 10,
    ax=None,
    series=None,
):
    """A forest plot: one row per label (the first on top), a dot at its estimate and a horizontal
    error bar from its low to its high end (e.g. a paired difference and its 95% confidence
    interval; a NaN end: the dot only).

    A solid vertical line marks `zero` (no line if None; `zero_label` is written at its top) and a
    dashed one each entry of `references` ({label: x}, e.g. {"paper: +8": 8}), labelled at the top.
    `annotate` formats (estimate, low, high) right of each row (None: no text). With `series`
    (names), estimates, lows and highs are (rows, series): each row holds one bar per series, the
    first on top, in the colours C0, C1, ... and labelled with the series' names for a legend
    (`ax.legend()` or `fig.legend()` draws it); faint lines separate the rows and `annotate` is not
    used. Draws on `ax`, or on a new figure sized to the rows; returns the figure. A low end above
    its estimate or a high end below it raises ValueError."""
    labels = [str(label) for label in labels]
    m = 1 if series is None else len(series)
    values = [np.asarray(v, dtype=np.float64) for v in (estimates, lows, highs)]
    n = len(labels)
    if any(v.size % max(m, 1) or v.size // max(m, 1) != n for v in values):
        per = " and series" if series is not None else ""
        raise ValueError(
            f"forest needs one estimate, low and high per label{per}: got {n} labels, {m} "
            f"series, {values[0].size} estimates, {values[1].size} lows, {values[2].size} highs"
        )
    estimates, lows, highs = (v.reshape(n, m) for v in values)
    with np.errstate(invalid="ignore"):
        if np.any(lows > estimates) or np.any(highs < estimates):
            raise ValueError("every interval must contain its estimate (low <= estimate <= high)")
    new = ax is None
    fig, ax = plt.subplots(figsize=(7.5, 1.3 + 0.5 * max(n, 1))) if new else (ax.figure, ax)
    lines = [] if zero is None else [(float(zero), zero_label, "-")]
    lines += [(float(x), label, "--") for label, x in (references or {}).items()]
    offsets = (np.arange(m) - (m - 1) / 2) * (0.7 / m)
    for k, j in np.ndindex(n, m):
        estimate, low, high = estimates[k, j], lows[k, j], highs[k, j]
        bar = None if np.isnan(low) or np.isnan(high) else [[estimate - low], [high - estimate]]
        ax.errorbar(
            [estimate],
            [n - 1 - k - offsets[j]],
            xerr=bar,
            fmt="o",
            lw=1.6,
            zorder=3,
            color="tab:blue" if series is None else f"C{j}",
            capsize=4 if m == 1 else 3,
            ms=6 if m == 1 else 5,
            label=str(series[j]) if series is not None and k == 0 else None,
        )
        if annotate and series is None:
            ax.annotate(
                annotate.format(estimate, low, high),
                xy=(1.02, n - 1 - k),
                xycoords=("axes fraction", "data"),
                va="center",
                fontsize=fontsize - 1,
            )
    for k in range(n - 1 if series is not None else 0):
        ax.axhline(k + 0.5, color="0.85", lw=0.8, zorder=0)
    ax.set_yticks(np.arange(n)[::-1], labels, fontsize=fontsize)
    ax.set_ylim(-0.7, n + 0.3)
    ends = np.concatenate(
        [estimates.ravel(), lows.ravel(), highs.ravel(), [x for x, _, _ in lines]]
    )
    ends = ends[np.isfinite(ends)]
    low_end, high_end = (ends.min(), ends.max()) if len(ends) else (-1.0, 1.0)
    pad = 0.08 * (high_end - low_end) if high_end > low_end else 1.0
    ax.set_xlim(low_end - pad, high_end + pad)
    for x, label, style in lines:
        ax.axvline(x, color="0.3" if style == "-" else "tab:red", ls=style, lw=1.0, zorder=1)
        if label:  # written towards the middle, so that it stays inside the axes
            right = x > (low_end + high_end) / 2
            ax.text(
                x,
                n - 0.05,
                f" {label} ",
                ha="right" if right else "left",
                va="center",
                fontsize=fontsize - 1,
                color="0.3" if style == "-" else "tab:red",
            )
    ax.set_xlabel(xlabel, fontsize=fontsize)
    ax.tick_params(axis="x", labelsize=fontsize - 1)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=fontsize)
    if new:
        fig.tight_layout()
    return fig
