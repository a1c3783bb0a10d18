"""The latent slider explorer: one slider per latent dimension, the decoded image redrawn as you
drag.

Beside the decoded image it shows the nearest training image at the same size and the latent scatter
(click it to move there); a display switch shows both images stretched to their own 1-99 % range
(the default: the decodes are faint, not empty) or as decoded; the readout gives the decode's crack
score against the training images'; a range switch toggles the sliders between the region the data
occupies and the paper's box, a menu jumps to any training image, and a Play control walks the
straight path between two training images.
"""

from __future__ import annotations

import io

import ipywidgets as widgets
import numpy as np
from ipyevents import Event
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image as PILImage

from vae_overlay import paper
from vae_overlay.data import as_uint8, as_unit_float
from vae_overlay.latent import compiled_decoder, contrast_stretch, interpolate

OCCUPIED, PAPER = "occupied", "paper"  # the range switch's keys
RANGE_LABELS = {OCCUPIED: "occupied region", PAPER: "paper's box", "given": "given ranges"}
STRETCHED, AS_DECODED = "stretched", "as decoded"  # the display switch's keys
DISPLAY_LABELS = {STRETCHED: "stretched to its 1–99 % range", AS_DECODED: "as decoded"}
# The decoded and training images are sent at their own size (a 64 px PNG is encoded, sent and
# decoded faster than a 256 px one) and enlarged by the browser without smoothing; this style rule
# is inside an HTML caption.
PIXELATED = (
    "<style>.latent-explorer img.latent-decoded, .latent-explorer img.latent-nearest "
    "{image-rendering: pixelated}</style>"
)
EXACT_PAIR_LIMIT = 2000  # farthest_pair compares all pairs up to this many points (n² distances)


def upscale(pixels, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of the first two axes by an integer factor."""
    return np.asarray(pixels).repeat(factor, axis=0).repeat(factor, axis=1)


def png_bytes(pixels: np.ndarray, size: int | None = None) -> bytes:
    """PNG bytes of a uint8 image (h, w), (h, w, 1), (h, w, 3) or (h, w, 4), upscaled by nearest
    neighbour."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if size is not None and pixels.shape[0] != size:
        pixels = upscale(pixels, max(1, int(round(size / pixels.shape[0]))))
    buffer = io.BytesIO()
    # compress_level=1: a few hundred microseconds instead of milliseconds, the files stay small
    PILImage.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def snap(value: float, step: float = paper.STEP) -> float:
    """`value` rounded to the nearest multiple of `step` (0.30000000000000004 comes out as 0.3,
    -0.04 as 0.0)."""
    return round(float(np.round(value / step) * step), 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def paper_ranges(latent_dim: int):
    """The paper's box: z1 in [-15, 15], z2 in [-10, 10]; in other dimensions [-15, 15] for every
    axis."""
    return [paper.Z1_RANGE, paper.Z2_RANGE] if latent_dim == 2 else [paper.Z1_RANGE] * latent_dim


def occupied_ranges(
    latent_means, step: float = paper.STEP, margin: float = 0.1, min_margin: float = 0.5
):
    """Per dimension, min..max of the latent means widened on both sides by max(`margin` × span,
    `min_margin`), snapped outwards to `step`: the region where the decoder has seen data, so the
    sliders decode interpolations."""
    latent_means = np.asarray(latent_means, dtype=np.float64)
    ranges = []
    for low, high in zip(latent_means.min(axis=0), latent_means.max(axis=0)):
        widen = max(margin * (high - low), min_margin)
        ranges.append(
            (
                round(float(np.floor((low - widen) / step + 1e-9) * step), 6),
                round(float(np.ceil((high + widen) / step - 1e-9) * step), 6),
            )
        )
    return ranges


def default_ranges(latent_dim: int, latent_means=None, step: float = paper.STEP):
    """Slider ranges: the occupied region of the latent means when given, else the paper's box."""
    return paper_ranges(latent_dim) if latent_means is None else occupied_ranges(latent_means, step)


def farthest_pair(points) -> tuple[int, int]:
    """Indices (i, j), i < j, of the two points farthest apart; exact up to EXACT_PAIR_LIMIT points,
    above it the point farthest from the centroid and the point farthest from that one (two passes,
    no n² matrix)."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) <= EXACT_PAIR_LIMIT:
        squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
        i, j = np.unravel_index(squared.argmax(), squared.shape)
    else:
        i = ((points - points.mean(axis=0)) ** 2).sum(axis=1).argmax()
        j = ((points - points[i]) ** 2).sum(axis=1).argmax()
    return int(min(i, j)), int(max(i, j))


class ScatterMarker:
    """A latent scatter rendered once with equal aspect; `png(z)` draws only a small ring at z on a
    copy of its pixels, and `latent(row, column)` maps a pixel of the rendered image back to latent
    coordinates.

    `limits` ((low, high) per axis) is the region that must be visible (the sliders' box, outlined);
    with equal aspect in a square picture the longer axis sets the scale and the shorter one is
    widened around its centre.
    """

    def __init__(self, points, dims=(0, 1), size_px: int = 256, limits=None, marker_px: int = 4):
        points = np.asarray(points, dtype=np.float64)
        dpi = 80
        figure = Figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
        canvas = FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.scatter(
            points[:, dims[0]], points[:, dims[1]], s=3, c="tab:blue", alpha=0.7, linewidths=0
        )
        if limits is not None:
            (x0, x1), (y0, y1) = limits[dims[0]], limits[dims[1]]
            axes.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", lw=0.8, ec="0.5")
            )
            # autoscaled (not fixed) limits: equal aspect may widen them without a warning
            axes.margins(0)
        axes.set_aspect("equal", adjustable="datalim")  # one latent unit is as long on both axes
        axes.set_xlabel(f"z{dims[0] + 1}", fontsize=8, labelpad=1)
        axes.set_ylabel(f"z{dims[1] + 1}", fontsize=8, labelpad=1)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        figure.tight_layout(pad=0.3)
        canvas.draw()
        self.base = np.asarray(canvas.buffer_rgba())[..., :3].copy()
        self.height = self.base.shape[0]
        self.transform = axes.transData
        self.box = axes.bbox  # axes area in display pixels: the marker is clamped to it
        self.dims = dims
        radius = np.hypot(*np.mgrid[-marker_px : marker_px + 1, -marker_px : marker_px + 1])
        # (row, column) offsets
        self.ring = np.argwhere(np.abs(radius - marker_px + 0.5) <= 0.75) - marker_px

    def pixel(self, z):
        """(row, column) in the rendered image of latent point z, clamped to the axes area."""
        x, y = self.transform.transform((float(z[self.dims[0]]), float(z[self.dims[1]])))
        x = min(max(x, self.box.x0), self.box.x1 - 1)
        y = min(max(y, self.box.y0 + 1), self.box.y1)
        return int(round(self.height - y)), int(round(x))

    def latent(self, row: float, column: float) -> tuple[float, float]:
        """The latent coordinates (along `dims`) of a pixel of the rendered image: the inverse of
        `pixel`."""
        x, y = self.transform.inverted().transform((float(column), float(self.height - row)))
        return float(x), float(y)

    def png(self, z) -> bytes:
        """PNG bytes of the scatter with a small red ring at z (clamped to the axes edge when
        outside)."""
        pixels = self.base.copy()
        spots = self.ring + self.pixel(z)
        inside = (
            (spots >= 0).all(axis=1)
            & (spots[:, 0] < pixels.shape[0])
            & (spots[:, 1] < pixels.shape[1])
        )
        pixels[spots[inside, 0], spots[inside, 1]] = (220, 20, 20)
        return png_bytes(pixels)


class LatentExplorer:
    """Sliders z1..zd (step 0.1) that decode the latent point as they move, shown beside the nearest
    training image (when `images` are given) and a marker on the latent scatter (when `latent_means`
    are given).

    With latent means: the sliders span their occupied region (`occupied_ranges`), and
    `range_switch` toggles to the paper's box; a click on the scatter moves z1, z2 there; `jump` (a
    menu of the training images) moves every slider to that image's mean; `play` walks `path_frames`
    points on the straight line from the `jump` image to the `path_end` image (by default the two
    farthest apart, or `path_ends=(i, j)`). `ranges` given explicitly replace the occupied region.
    `images` (n, s, s, 1), floats in [0, 1] or uint8, are the training images in the order of
    `latent_means`; `image_px` is the shown size of the decoded image and the scatter. The sliders
    start at the path's first image (or at `start`). `display_switch` shows the decoded and the
    nearest image stretched to their own 1-99 % range (`latent.contrast_stretch`, the default) or as
    decoded; the readout gives the decode's crack score (`section3_study.crack_scores`, on the
    decode as it is) and, with `images`, the score that 90 % of the training images reach. Display
    it as the last expression of a cell (or `display(explorer)`); `sliders`, `image`,
    `nearest_image`, `scatter` (its clicks arrive through `events`), `display_switch`,
    `range_switch`, `jump`, `path_end`, `play` and `label` are the widgets it is made of.
    """

    def __init__(
        self,
        decoder,
        latent_means=None,
        names=None,
        images=None,
        ranges=None,
        step: float = paper.STEP,
        image_px: int = 256,
        start=None,
        path_ends=None,
        path_frames: int = 25,
    ):
        self.latent_dim = int(decoder.inputs[0].shape[-1])
        # float output: the uint8 conversion is cheaper in numpy at one image
        self.decode = compiled_decoder(decoder)
        self.latent_means = (
            None if latent_means is None else np.asarray(latent_means, dtype=np.float64)
        )
        count = 0 if self.latent_means is None else len(self.latent_means)
        self.names = (
            [str(name) for name in names] if names is not None else [f"#{i}" for i in range(count)]
        )
        self.images, self.step, self.image_px = images, step, image_px
        self.range_sets = self.slider_ranges(ranges)
        self.range_switch = self.make_range_switch()
        self.display_switch = self.make_display_switch()
        self.crack_threshold = self.training_crack_threshold(images, count)
        if path_ends is not None:
            self.path_ends = (int(path_ends[0]), int(path_ends[1]))
        else:
            self.path_ends = farthest_pair(self.latent_means) if count >= 2 else None
        if start is None:  # the path's start, so that the menu and the sliders agree
            start = (
                self.latent_means[self.path_ends[0] if self.path_ends else 0]
                if count
                else np.zeros(self.latent_dim)
            )
        self.sliders = self.make_sliders(start)
        self.decode(np.zeros((1, self.latent_dim), np.float32))  # trace and warm up once, here
        self.image = self.image_widget("latent-decoded", image_px)
        self.label = widgets.HTML()
        self.label.add_class("latent-label")
        self.holding = False  # True while several sliders move at once: one update at the end
        # what the scatter and the thumbnail show now, so that unchanged ones are not re-sent
        self.shown = {}
        self.markers = {}  # range key -> ScatterMarker, rendered on first use
        self.nearest_image = self.scatter = self.events = self.jump = self.path_end = self.play = (
            None
        )
        views = self.make_views(count)
        controls = self.make_controls(count, path_frames)
        for slider in self.sliders:
            slider.observe(self.on_slider, names="value")
        self.range_switch.observe(self.on_range, names="value")
        self.display_switch.observe(lambda change: self.update(), names="value")
        self.update()
        self.widget = widgets.VBox([widgets.HBox(views), *self.sliders, *controls, self.label])
        self.widget.add_class("latent-explorer")

    def slider_ranges(self, ranges) -> dict:
        """The sliders' range sets by range-switch key: the `ranges` given, or else the latent
        means' occupied region (with latent means), then the paper's box. Raises ValueError unless
        each set has one range per latent dimension."""
        range_sets = {}
        if ranges is not None:
            range_sets["given"] = [tuple(value_range) for value_range in ranges]
        elif self.latent_means is not None:
            range_sets[OCCUPIED] = occupied_ranges(self.latent_means, self.step)
        range_sets[PAPER] = paper_ranges(self.latent_dim)
        if any(len(value_ranges) != self.latent_dim for value_ranges in range_sets.values()):
            raise ValueError(
                f"need one range per latent dimension ({self.latent_dim}), got {len(ranges)}"
            )
        return range_sets

    def make_range_switch(self):
        """The toggle between the range sets (`range_sets`), the first one chosen."""
        switch = widgets.ToggleButtons(
            options=[(RANGE_LABELS[key], key) for key in self.range_sets],
            style={"button_width": "130px"},
            tooltips=["the sliders' range: " + RANGE_LABELS[key] for key in self.range_sets],
        )
        switch.add_class("latent-range")
        return switch

    @staticmethod
    def make_display_switch():
        """The toggle between the images stretched to their own 1-99 % range (the first) and as
        decoded."""
        switch = widgets.ToggleButtons(
            options=[(DISPLAY_LABELS[key], key) for key in (STRETCHED, AS_DECODED)],
            style={"button_width": "230px"},
            tooltips=[
                (
                    "each image rescaled to its own 1–99 % range: a display option, not the model's"
                    " output"
                ),
                "the decoder's output as it is",
            ],
        )
        switch.add_class("latent-contrast")
        return switch

    def training_crack_threshold(self, images, count: int) -> float | None:
        """The crack score that `CRACK_QUANTILE` (90 %) of the training images reach, or None
        without training images."""
        if not (images is not None and count):
            return None
        from vae_overlay.section3_study import CRACK_QUANTILE

        floats = as_unit_float(images)
        return float(np.quantile(self.crack_scores(floats), CRACK_QUANTILE))

    def make_sliders(self, start) -> list:
        """One slider per latent dimension, z1..zd, over the chosen range set, at `start` (snapped
        to the step, clipped to the range)."""
        ranges = self.range_sets[self.range_switch.value]
        sliders = [
            widgets.FloatSlider(
                value=float(np.clip(snap(start[k], self.step), low, high)),
                min=low,
                max=high,
                step=self.step,
                description=f"z{k + 1}",
                continuous_update=True,
                readout_format=".1f",
                layout=widgets.Layout(width="512px"),
            )
            for k, (low, high) in enumerate(ranges)
        ]
        for k, slider in enumerate(sliders):
            # CSS classes: stable handles for the browser test
            slider.add_class(f"latent-slider-z{k + 1}")
        return sliders

    def make_views(self, count: int) -> list:
        """The captioned pictures in one row: the decode, then the nearest training image (with
        `images`) and the clickable latent scatter (with latent means)."""
        views = [self.captioned("decoded at z" + PIXELATED, self.image)]
        if self.images is not None and count:
            self.nearest_image = self.image_widget("latent-nearest", self.image_px)
            views.append(self.captioned("nearest training image", self.nearest_image))
        if count:
            self.scatter = self.image_widget("latent-scatter", self.image_px)
            self.events = Event(source=self.scatter, watched_events=["click"])
            self.events.on_dom_event(self.on_scatter_click)
            views.append(self.captioned("latent means: click to move there", self.scatter))
        return views

    def make_controls(self, count: int, path_frames: int) -> list:
        """The rows under the sliders: the display switch, the range switch (when there is a choice)
        and the path controls (with two latent means or more)."""
        controls = [
            widgets.HBox(
                [widgets.Label("images", layout=widgets.Layout(width="90px")), self.display_switch]
            )
        ]
        if len(self.range_sets) > 1:
            controls.append(
                widgets.HBox(
                    [
                        widgets.Label("sliders' range", layout=widgets.Layout(width="90px")),
                        self.range_switch,
                    ]
                )
            )
        if count >= 2:
            controls.append(self.path_controls(path_frames))
        return controls

    @staticmethod
    def image_widget(css_class: str, px: int):
        """An empty PNG Image widget shown at px × px whatever its pixels, with a CSS class (a
        stable handle for the browser test)."""
        image = widgets.Image(format="png", width=str(px), height=str(px))
        image.add_class(css_class)
        return image

    @staticmethod
    def captioned(caption: str, view):
        """`view` under a small grey caption."""
        return widgets.VBox(
            [widgets.HTML(f"<span style='font-size: 11px; color: #555'>{caption}</span>"), view]
        )

    def path_controls(self, path_frames: int):
        """The `jump` and `path_end` menus and the `play` control, in one row."""
        options = [(name, i) for i, name in enumerate(self.names)]
        self.jump = widgets.Dropdown(
            options=options,
            value=self.path_ends[0],
            description="image",
            layout=widgets.Layout(width="260px"),
        )
        self.path_end = widgets.Dropdown(
            options=options,
            value=self.path_ends[1],
            description="path to",
            layout=widgets.Layout(width="260px"),
        )
        self.play = widgets.Play(
            value=0,
            min=0,
            max=path_frames - 1,
            step=1,
            interval=150,
            show_repeat=False,
            tooltip="walk the straight path from 'image' to 'path to'",
        )
        for widget, css_class in (
            (self.jump, "latent-jump"),
            (self.path_end, "latent-path-end"),
            (self.play, "latent-play"),
        ):
            widget.add_class(css_class)
        self.jump.observe(self.on_jump, names="value")
        self.path_end.observe(self.on_path_end, names="value")
        self.play.observe(self.on_play, names="value")
        walk = widgets.Label("walk the path", layout=widgets.Layout(margin="0 4px 0 16px"))
        return widgets.HBox([self.jump, self.path_end, walk, self.play])

    @property
    def z(self) -> np.ndarray:
        """The latent point the sliders are at."""
        return np.array([slider.value for slider in self.sliders], dtype=np.float32)

    @property
    def marker(self) -> ScatterMarker | None:
        """The scatter for the current range (rendered once per range), or None without latent
        means."""
        if self.latent_means is None:
            return None
        key = self.range_switch.value
        if key not in self.markers:
            self.markers[key] = ScatterMarker(
                self.latent_means, size_px=self.image_px, limits=self.range_sets[key]
            )
        return self.markers[key]

    def path(self) -> np.ndarray:
        """The Play control's points: `play.max + 1` evenly spaced on the line from the `jump` to
        the `path_end` image's latent mean, both ends included."""
        return interpolate(
            self.latent_means[self.jump.value],
            self.latent_means[self.path_end.value],
            self.play.max + 1,
        )

    def move_to(self, z) -> None:
        """Move every slider to z (snapped to the step, clipped to its range) and update once."""
        self.holding = True
        try:
            for slider, value in zip(self.sliders, z):
                slider.value = float(np.clip(snap(value, self.step), slider.min, slider.max))
        finally:
            self.holding = False
        self.update()

    def move_to_pixel(self, row: float, column: float) -> None:
        """Move z1, z2 (the scatter's axes) to the latent point under a pixel of the scatter
        picture."""
        z = self.z.astype(np.float64)
        z[list(self.marker.dims)] = self.marker.latent(row, column)
        self.move_to(z)

    def set_range(self, key: str) -> None:
        """Give the sliders the range set `key` (a key of `range_sets`), keeping each value inside
        it."""
        self.holding = True
        try:
            for slider, (low, high) in zip(self.sliders, self.range_sets[key]):
                # min and max change together
                with slider.hold_sync(), slider.hold_trait_notifications():
                    slider.min, slider.max = low, high
        finally:
            self.holding = False
        self.update()

    def on_slider(self, change) -> None:
        """A slider moved in the browser (or from Python, one at a time): redraw."""
        if not self.holding:
            self.update()

    def on_range(self, change) -> None:
        """The range switch changed."""
        self.set_range(change["new"])

    def on_scatter_click(self, event: dict) -> None:
        """ipyevents click: `dataX`, `dataY` are the clicked pixel in the PNG's own pixels."""
        self.move_to_pixel(event["dataY"], event["dataX"])

    def on_jump(self, change) -> None:
        """A training image was chosen in the `image` menu: go to its mean; Play starts from
        there."""
        self.rewind()
        self.move_to(self.latent_means[change["new"]])

    def on_path_end(self, change) -> None:
        """A new end for the path: Play starts over (the sliders stay where they are)."""
        self.rewind()

    def on_play(self, change) -> None:
        """Play's frame changed: go to that point of the path."""
        if not self.holding:
            self.move_to(self.path()[change["new"]])

    def rewind(self) -> None:
        """Put the Play control back at the start of the path without moving the sliders."""
        self.holding = True
        try:
            self.play.value = 0
        finally:
            self.holding = False

    def update(self) -> None:
        """Decode the current point into the image first (the latency that matters), then move the
        marker, show the nearest training image and rewrite the label; the scatter and thumbnail are
        re-sent only if changed."""
        z = self.z
        decoded = self.decode(z[None, :])[0]
        # at its own size: the browser enlarges it (PIXELATED)
        self.image.value = png_bytes(self.shown_pixels(decoded))
        text = "z = (" + ", ".join(f"{value:.1f}" for value in z) + ")"
        score = float(self.crack_scores(decoded[None])[0])
        text += f"; crack score {score:.4f}"
        if self.crack_threshold is not None:
            verdict = "crack-like" if score >= self.crack_threshold else "below"
            text += f" ({verdict}: 90 % of the training images score ≥ {self.crack_threshold:.4f})"
        if self.latent_means is not None:
            distances = np.linalg.norm(self.latent_means - z[None, :], axis=1)
            nearest = int(distances.argmin())
            text += (
                f"; nearest training image: {self.names[nearest]} at distance"
                f" {distances[nearest]:.1f}"
            )
        self.label.value = text
        if self.latent_means is not None:
            marker = self.marker
            spot = (self.range_switch.value, marker.pixel(z))
            if self.shown.get("marker") != spot:
                self.scatter.value, self.shown["marker"] = marker.png(z), spot
            key = (nearest, self.display_switch.value)
            if self.nearest_image is not None and self.shown.get("nearest") != key:
                self.nearest_image.value = png_bytes(self.shown_pixels(self.images[nearest]))
                self.shown["nearest"] = key

    @staticmethod
    def crack_scores(images) -> np.ndarray:
        """section3_study.crack_scores (the study's score of a decode), imported when first
        needed."""
        from vae_overlay.section3_study import crack_scores

        return crack_scores(np.asarray(images, np.float32))

    def shown_pixels(self, image) -> np.ndarray:
        """uint8 pixels of an image as the display switch shows it: stretched to its 1-99 % range,
        or as it is."""
        if self.display_switch.value == STRETCHED:
            return as_uint8(contrast_stretch(image))
        return as_uint8(image)  # uint8 as it is, floats in [0, 1] scaled

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
