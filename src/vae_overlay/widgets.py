"""The latent slider explorer: one slider per latent dimension, the decoded image redrawn as you drag."""
from __future__ import annotations

import io

import ipywidgets as widgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image as PILImage

from vae_overlay.latent import PAPER_STEP, PAPER_Z1_RANGE, PAPER_Z2_RANGE, compiled_decoder


def png_bytes(pixels: np.ndarray, size: int | None = None) -> bytes:
    """PNG bytes of a uint8 image (h, w), (h, w, 1), (h, w, 3) or (h, w, 4), upscaled by nearest neighbour."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if size is not None and pixels.shape[0] != size:
        factor = max(1, int(round(size / pixels.shape[0])))
        pixels = pixels.repeat(factor, axis=0).repeat(factor, axis=1)
    buffer = io.BytesIO()
    # compress_level=1: a few hundred microseconds instead of milliseconds, the files stay small
    PILImage.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def default_ranges(latent_dim: int, latent_means=None, step: float = PAPER_STEP):
    """Slider ranges: the paper's region in 2-D; otherwise mean ± 3 std of the data (or ±15) per dimension."""
    if latent_dim == 2:
        return [PAPER_Z1_RANGE, PAPER_Z2_RANGE]
    if latent_means is None:
        return [PAPER_Z1_RANGE] * latent_dim
    latent_means = np.asarray(latent_means, dtype=np.float64)
    ranges = []
    for mean, std in zip(latent_means.mean(axis=0), latent_means.std(axis=0)):
        half_width = max(3.0 * std, 1.0)
        low = np.floor((mean - half_width) / step) * step
        high = np.ceil((mean + half_width) / step) * step
        ranges.append((round(float(low), 6), round(float(high), 6)))
    return ranges


class ScatterMarker:
    """A latent scatter rendered once; `png(z)` draws only a marker at z on a copy of its pixels."""

    def __init__(self, points, dims=(0, 1), size_px: int = 256, limits=None, marker_px: int = 5):
        points = np.asarray(points, dtype=np.float64)
        dpi = 80
        figure = Figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
        canvas = FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.scatter(points[:, dims[0]], points[:, dims[1]], s=6, c="tab:blue", alpha=0.7)
        if limits is not None:
            axes.set_xlim(*limits[0])
            axes.set_ylim(*limits[1])
        axes.set_xlabel(f"z{dims[0] + 1}", fontsize=8)
        axes.set_ylabel(f"z{dims[1] + 1}", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        figure.tight_layout(pad=0.3)
        canvas.draw()
        self.base = np.asarray(canvas.buffer_rgba())[..., :3].copy()
        self.height = self.base.shape[0]
        self.transform = axes.transData
        self.box = axes.bbox  # axes area in display pixels: the marker is clipped to it
        self.dims = dims
        self.marker_px = marker_px

    def pixel(self, z):
        """(row, column) in the rendered image of latent point z."""
        x, y = self.transform.transform((float(z[self.dims[0]]), float(z[self.dims[1]])))
        x = min(max(x, self.box.x0), self.box.x1 - 1)
        y = min(max(y, self.box.y0 + 1), self.box.y1)
        return int(round(self.height - y)), int(round(x))

    def png(self, z) -> bytes:
        """PNG bytes of the scatter with a red cross at z (clamped to the axes edge when outside)."""
        pixels = self.base.copy()
        row, column = self.pixel(z)
        r = self.marker_px
        top, bottom = max(row - r, 0), min(row + r + 1, pixels.shape[0])
        left, right = max(column - r, 0), min(column + r + 1, pixels.shape[1])
        pixels[top:bottom, max(column - 1, 0):column + 2] = (220, 20, 20)
        pixels[max(row - 1, 0):row + 2, left:right] = (220, 20, 20)
        return png_bytes(pixels)


class LatentExplorer:
    """Sliders z1..zd (step 0.1) that decode the latent point as they move, with a marker on the latent scatter.

    Display it as the last expression of a cell (or `display(explorer)`); `explorer.sliders`,
    `explorer.image` and `explorer.scatter` are the ipywidgets it is made of.
    """

    def __init__(self, decoder, latent_means=None, names=None, ranges=None, step: float = PAPER_STEP,
                 image_px: int = 256, start=None):
        self.decoder = decoder
        self.latent_dim = int(decoder.inputs[0].shape[-1])
        self.decode = compiled_decoder(decoder)  # float output: the uint8 conversion is cheaper in numpy at one image
        self.latent_means = None if latent_means is None else np.asarray(latent_means, dtype=np.float64)
        self.names = names
        self.image_px = image_px
        ranges = default_ranges(self.latent_dim, self.latent_means, step) if ranges is None else ranges
        if len(ranges) != self.latent_dim:
            raise ValueError(f"need one range per latent dimension ({self.latent_dim}), got {len(ranges)}")
        start = np.zeros(self.latent_dim) if start is None else np.asarray(start, dtype=np.float64)
        self.sliders = [
            widgets.FloatSlider(
                value=float(np.clip(np.round(start[k] / step) * step, low, high)), min=low, max=high,
                step=step, description=f"z{k + 1}", continuous_update=True, readout_format=".1f",
                layout=widgets.Layout(width="512px"))
            for k, (low, high) in enumerate(ranges)
        ]
        for k, slider in enumerate(self.sliders):
            slider.add_class(f"latent-slider-z{k + 1}")  # CSS classes: stable handles for the browser test
        self.decode(np.zeros((1, self.latent_dim), np.float32))  # trace and warm up once, here
        self.image = widgets.Image(format="png", width=str(image_px), height=str(image_px))
        self.image.add_class("latent-decoded")
        self.label = widgets.HTML()
        self.label.add_class("latent-label")
        self.scatter = None
        self._marker = None
        if self.latent_means is not None:
            self._marker = ScatterMarker(self.latent_means, size_px=image_px, limits=ranges[:2])
            self.scatter = widgets.Image(format="png", width=str(image_px), height=str(image_px))
            self.scatter.add_class("latent-scatter")
        for slider in self.sliders:
            slider.observe(self._on_change, names="value")
        self.update()
        views = [self.image] + ([self.scatter] if self.scatter is not None else [])
        self.widget = widgets.VBox([widgets.HBox(views), *self.sliders, self.label])
        self.widget.add_class("latent-explorer")

    @property
    def z(self) -> np.ndarray:
        """The latent point the sliders are at."""
        return np.array([slider.value for slider in self.sliders], dtype=np.float32)

    def _on_change(self, change) -> None:
        self.update()

    def update(self) -> None:
        """Decode the current point into the image, move the marker, and rewrite the label."""
        z = self.z
        pixels = np.round(np.clip(self.decode(z[None, :])[0], 0, 1) * 255).astype(np.uint8)
        self.image.value = png_bytes(pixels, size=self.image_px)
        text = "z = (" + ", ".join(f"{value:.1f}" for value in z) + ")"
        if self._marker is not None:
            self.scatter.value = self._marker.png(z)
            distances = np.linalg.norm(self.latent_means - z[None, :], axis=1)
            nearest = int(distances.argmin())
            name = self.names[nearest] if self.names is not None else f"#{nearest}"
            text += f"; nearest training image: {name} at distance {distances[nearest]:.1f}"
        self.label.value = text

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
