"""Notebook 05's interactive overlay explorer: pick sources, an overlay method, a weight per source
(and the weight w of the weighted offset sum); see the overlay, the outlines of the chosen sources'
defect masks on it, its fidelity score, and where its latent vector lies in the latent plane, where
a click shows the decode of any point.

The overlay methods are `vae_overlay.overlay_methods`' (combined by its `combine`, scored by
`overlay.fidelity`), computed as `overlay_experiment` computes them for notebook 05's table (a test
checks that they agree), with the slow parts done once: the sources' latent means, both background
vectors z_bg and the decoded cluster centres are cached when the explorer is made, so a change
decodes at most one latent vector.

A source's weight scales what that source adds to the overlay, measured from the point the method
combines around, so that every method has sliders that act on it from the start: for the latent
methods, the offset of its latent vector from the origin (sum, mean) or from z_bg (offset,
weighted), z_i -> c + w_i (z_i - c), before they are combined; for the methods that combine images
(decoded compositing, the pixel baselines), its image's difference from the defect-free background,
x_i -> bg + w_i (x_i - bg). Weight 1 leaves a source as it is (the very same array, so the default
overlays are the table's), 0 removes its defect, 2 doubles it.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
from ipyevents import Event
from matplotlib import colormaps

from vae_overlay import model, overlay, overlay_methods
from vae_overlay import overlay_experiment as experiment
from vae_overlay.data import as_uint8
from vae_overlay.latent import compiled_decoder
from vae_overlay.overlay_plane import LatentPlane
from vae_overlay.overlay_study import ring
from vae_overlay.widgets import png_bytes, upscale

METHODS = {key: found.label for key, found in overlay_methods.METHODS.items()}  # key -> menu label
# where z_bg comes from, as overlay_experiment.method_overlay names it
BACKGROUNDS = {"image": "z_bg: encoded background", "centres": "z_bg: mean of centres"}
# the sources' sliders; 1: the source as it is
SOURCE_WEIGHTS = {"min": 0.0, "max": 2.0, "step": 0.05}
# the controls' width: with the two pictures (256 px each) the explorer fits in 950 px
CONTROLS_PX = 380
CAPTION = "<span style='font-size: 11px; color: #555'>{}</span>"
PLANE_LEGEND = (
    "discs: the sources' centres (their colours), z_bg (dark: encoded background, light: mean of "
    "the centres); red ring: the overlay's z"
)


def outline(mask) -> np.ndarray:
    """A mask's contour as the explorer draws it: the pixels just outside it that touch it
    (`overlay_study.ring` of width 1, 4-neighbourhood), so that the mask's own pixels stay
    visible."""
    return ring(mask, 1, neighbours=4)


def to_rgb(image) -> np.ndarray:
    """A float image (s, s) or (s, s, 1) in [0, 1] (clipped) as uint8 RGB (s, s, 3)."""
    grey = np.asarray(image).reshape(np.shape(image)[:2])
    return np.repeat(as_uint8(grey)[..., None], 3, axis=-1)


def scaled(points, weights, centre) -> np.ndarray:
    """Each of the stacked `points` (latent vectors or images) moved to centre + w_i (p_i - centre),
    in the points' dtype. A point whose weight is exactly 1 is returned as it is, not recomputed:
    with the default weights the overlays are bit for bit the ones the experiment computes."""
    points = np.asarray(points)
    weights = np.asarray(weights, np.float64).reshape(-1, *[1] * (points.ndim - 1))
    moved = (centre + weights * (points - centre)).astype(points.dtype)
    return np.where(weights == 1, points, moved)


def slider(value: float, description: str, **limits) -> widgets.FloatSlider:
    """A weight slider as the explorer shows them: two decimals, redrawn while it moves, 420 px
    wide."""
    return widgets.FloatSlider(
        value=value,
        description=description,
        readout_format=".2f",
        continuous_update=True,
        style={"description_width": "90px"},
        layout=widgets.Layout(width=f"{CONTROLS_PX}px"),
        **limits,
    )


class OverlayExplorer:
    """Overlay the chosen sources with the chosen method and weights; show it with mask outlines,
    the sources, the score and the latent plane.

    `OverlayExplorer(setup, vae)`: `setup` is notebook 05's `overlay_experiment.Setup` (sources,
    masks, names, background, threshold) and `vae` a trained model with `.encoder` and `.decoder`
    (`fixed["vae"]`). Display it as the last expression of a cell. Controls: a tick box under every
    source thumbnail (two or more), the method (`METHODS`), a weight per source (`source_weights`:
    live for every method, see the module docstring; `weights=` sets where they start), the weight w
    of the weighted offset sum, where z_bg comes from (`BACKGROUNDS`, as in
    `overlay_experiment.method_overlay`), whether to draw the outlines, and a click on the latent
    plane (`plane`, its clicks through `events`), which shows the decode of the clicked point
    (`placed`) until another control moves. Latent vectors are the encoder means. Without masks the
    overlay is shown but not scored. `latent_point`, `overlay_image` and `score` are the
    computations alone.
    """

    def __init__(
        self,
        setup: experiment.Setup,
        vae,
        *,
        method: str = "sum",
        weight: float = 1.0,
        chosen=None,
        weights=None,
        image_px: int = 256,
        thumb_px: int = 128,
    ):
        self.setup = setup
        self.sources = np.asarray(setup.sources, np.float32)
        self.k, size = len(self.sources), self.sources.shape[1]
        if self.k < 2:
            raise ValueError(f"the explorer needs at least two source images, got {self.k}")
        self.decode = compiled_decoder(vae.decoder)
        self.z_mean = model.encode(vae.encoder, self.sources, dtype=np.float64)[0]  # the centres
        self.z_background = {
            "image": experiment.encoded_background(setup, vae.encoder),
            "centres": self.z_mean.mean(axis=0),
        }
        # decoded compositing needs no decoding per change
        self.decoded_centres = self.decode(self.z_mean)
        self.factor = max(1, round(image_px / size))
        self.colours = [
            tuple(int(255 * c) for c in colormaps["tab10"](i % 10)[:3]) for i in range(self.k)
        ]
        self.outlines = None  # each mask's contour at the display size, drawn on the overlay
        if setup.masks is not None:
            self.outlines = [outline(upscale(mask, self.factor)) for mask in setup.masks]
        self.latent_plane = LatentPlane(
            self.z_mean, self.z_background, self.colours, size * self.factor
        )
        # the latent point clicked on the plane, shown until another control moves
        self.placed = None
        # the latest overlay: combo, method, weight(s), background_from, z, image, fidelity
        self.result = {}
        self.shown_spot = "nothing yet"  # the plane's ring as last sent (None: no ring)

        shown_px = str(size * self.factor)
        self.image = widgets.Image(format="png", width=shown_px, height=shown_px)
        self.plane = widgets.Image(format="png", width=shown_px, height=shown_px)
        self.events = Event(source=self.plane, watched_events=["click"])
        self.events.on_dom_event(self.on_plane_click)
        self.method = widgets.Dropdown(
            options=[(label, key) for key, label in METHODS.items()],
            value=method,
            description="method",
            layout=widgets.Layout(width=f"{CONTROLS_PX}px"),
        )
        starts = self.weights_of(range(self.k), weights).tolist()
        self.source_weights = [
            slider(w, name, **SOURCE_WEIGHTS) for w, name in zip(starts, setup.names)
        ]
        self.weight = slider(weight, "weight w", min=0.0, max=3.0, step=0.05)
        # each as wide as its label
        self.background_from = widgets.ToggleButtons(
            options=[(label, key) for key, label in BACKGROUNDS.items()],
            value="image",
            style={"button_width": "auto"},
        )
        self.show_outlines = widgets.Checkbox(
            value=True, description="outline the chosen sources' masks", indent=False
        )
        self.caption, self.score_text = widgets.HTML(), widgets.HTML()
        chosen = range(self.k) if chosen is None else chosen
        self.ticks = [
            widgets.Checkbox(
                value=i in chosen,
                description=name,
                indent=False,
                layout=widgets.Layout(width="auto"),
            )
            for i, name in enumerate(setup.names)
        ]
        thumb_factor = max(1, round(thumb_px / size))
        self.thumbnails = [
            widgets.Image(
                value=self.thumbnail(i, thumb_factor),
                format="png",
                layout=widgets.Layout(border=f"3px solid {self.css_colour(i)}"),
            )
            for i in range(self.k)
        ]
        for name, widget in [
            ("image", self.image),
            ("plane", self.plane),
            ("method", self.method),
            ("weight", self.weight),
            ("background", self.background_from),
            ("outlines", self.show_outlines),
            ("caption", self.caption),
            ("score", self.score_text),
        ]:
            widget.add_class(f"overlay-{name}")  # CSS classes: stable handles for the browser test
        for i, (tick, thumbnail, weight_slider) in enumerate(
            zip(self.ticks, self.thumbnails, self.source_weights)
        ):
            tick.add_class(f"overlay-source-{i}")
            thumbnail.add_class(f"overlay-thumbnail-{i}")
            weight_slider.add_class(f"overlay-source-weight-{i}")
            weight_slider.layout.border_left = f"4px solid {self.css_colour(i)}"
        for control in [
            self.method,
            *self.source_weights,
            self.weight,
            self.background_from,
            *self.ticks,
        ]:
            control.observe(self.on_change, names="value")
        # drawing: keeps `placed`
        self.show_outlines.observe(lambda change: self.update(), names="value")
        self.widget = self.layout()
        self.update()

    def layout(self) -> widgets.VBox:
        """The overlay and the latent plane (with its legend) side by side, the controls beside them
        (the source weights first: they act on every method), the thumbnails with their tick boxes
        underneath. Every column has a fixed width, so that a long caption wraps instead of
        squeezing the pictures."""

        def column(width: int, *parts, margin: str = "0"):
            return widgets.VBox(
                list(parts),
                layout=widgets.Layout(width=f"{width}px", flex="0 0 auto", margin=margin),
            )

        def caption(text):
            return widgets.HTML(CAPTION.format(text))

        width = int(self.image.width) + 8
        overlay_view = column(width, caption("overlay"), self.image)
        plane_view = column(
            width,
            caption("latent plane: click to see the decode of a point"),
            self.plane,
            caption(PLANE_LEGEND),
        )
        weights_note = caption("source weights (1: as it is, 0: its defect removed)")
        controls = column(
            CONTROLS_PX + 10,
            self.method,
            weights_note,
            *self.source_weights,
            self.weight,
            self.background_from,
            self.show_outlines,
            self.caption,
            self.score_text,
            margin="0 0 0 8px",
        )
        sources = widgets.HBox([widgets.VBox([t, c]) for t, c in zip(self.thumbnails, self.ticks)])
        root = widgets.VBox([widgets.HBox([overlay_view, plane_view, controls]), sources])
        root.add_class("overlay-explorer")
        return root

    # ------------------------------------------------------------------ computations
    @property
    def chosen(self) -> tuple[int, ...]:
        """Indices of the ticked sources."""
        return tuple(i for i, tick in enumerate(self.ticks) if tick.value)

    @property
    def weights(self) -> tuple[float, ...]:
        """Every source's weight (ticked or not), as its slider shows it."""
        return tuple(weight_slider.value for weight_slider in self.source_weights)

    def css_colour(self, i: int) -> str:
        """Source i's outline colour as CSS (the notebook's tab10 colours, as in its latent
        scatter)."""
        return "rgb({}, {}, {})".format(*self.colours[i])

    def checked(self, combo, method: str, background_from: str) -> list[int]:
        """`combo` as a list of indices, once it, `method` and `background_from` are checked."""
        combo = list(combo)
        if len(combo) < 2:
            names = ", ".join(self.setup.names[i] for i in combo) or "none"
            raise ValueError(
                f"an overlay needs at least two sources, got {len(combo)} ({names}): "
                "choose two or more"
            )
        if not all(0 <= i < self.k for i in combo):
            raise ValueError(f"source indices must lie in 0..{self.k - 1}, got {combo}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
        if background_from not in BACKGROUNDS:
            raise ValueError(
                f"background_from must be one of {list(BACKGROUNDS)}, got {background_from!r}"
            )
        return combo

    def weights_of(self, combo, weights) -> np.ndarray:
        """The weights of the sources in `combo`, out of every source's `weights` (None: all 1)."""
        if weights is None:
            return np.ones(len(combo))
        if len(weights) != self.k:
            raise ValueError(f"need one weight per source ({self.k}), got {len(weights)}")
        return np.asarray(weights, np.float64)[list(combo)]

    def latent_point(
        self, combo, method: str, weight: float = 1.0, background_from: str = "image", weights=None
    ) -> np.ndarray | None:
        """The latent vector (d,) float64 that a latent method decodes for the overlay of `combo`;
        None for the methods that combine images. Arguments as for `overlay_image`."""
        combo = self.checked(combo, method, background_from)
        found = overlay_methods.METHODS[method]
        if found.space != "latent":
            return None
        z_bg = self.z_background[background_from]
        centre = z_bg if found.around_z_bg else np.zeros_like(z_bg)
        z_sources = scaled(self.z_mean[combo], self.weights_of(combo, weights), centre)
        return overlay_methods.combine(method, z_sources, z_bg, weight)

    def overlay_image(
        self, combo, method: str, weight: float = 1.0, background_from: str = "image", weights=None
    ) -> np.ndarray:
        """The overlay (s, s, 1) float32 of the sources `combo` (indices, at least two) by `method`
        (a key of METHODS). weight is used by "weighted" only, background_from ("image" or
        "centres") by "offset" and "weighted"; `weights` holds every source's weight (None: all 1;
        see the module docstring)."""
        z = self.latent_point(combo, method, weight, background_from, weights)
        if z is not None:
            return self.decode(z[None, :])[0]
        combo = list(combo)
        space = overlay_methods.METHODS[method].space
        images = self.decoded_centres if space == "decoded" else self.sources  # centres: decoded
        surface = np.asarray(self.setup.background, np.float32)[..., None]
        moved = scaled(images[combo], self.weights_of(combo, weights), surface)
        return overlay_methods.combine(method, moved)

    def score(self, combo, image) -> dict | None:
        """`overlay.fidelity` of an overlay of `combo` against those sources' masks (None without
        masks)."""
        if self.setup.masks is None:
            return None
        setup = self.setup
        return overlay.fidelity(image, setup.masks[list(combo)], setup.background, setup.threshold)

    # ------------------------------------------------------------------ drawing
    def thumbnail(self, i: int, factor: int) -> bytes:
        """PNG of source i enlarged by `factor`, with its own mask outlined in its colour."""
        pixels = upscale(to_rgb(self.sources[i]), factor)
        if self.setup.masks is not None:
            pixels[outline(upscale(self.setup.masks[i], factor))] = self.colours[i]
        return png_bytes(pixels)

    def render(self, image, combo) -> bytes:
        """PNG of an overlay enlarged to the display size, the masks of `combo` outlined (if
        ticked)."""
        pixels = upscale(to_rgb(image), self.factor)
        if self.outlines is not None and self.show_outlines.value:
            for i in combo:
                pixels[self.outlines[i]] = self.colours[i]
        return png_bytes(pixels)

    def describe(self, combo, fidelity: dict | None) -> str:
        """The score lines (HTML) for the fidelity of an overlay of `combo`."""
        if fidelity is None:
            return "no <code>&lt;name&gt;_mask.*</code> beside every source: fidelity is not scored"
        recall = ", ".join(
            f"{html.escape(self.setup.names[i])} {r:.2f}" for i, r in zip(combo, fidelity["recall"])
        )
        return (
            f"fidelity score <b>{fidelity['score']:.2f}</b> = mean recall"
            f" {fidelity['mean_recall']:.2f} × (1 − spurious {fidelity['spurious']:.2f})<br>recall:"
            f" {recall}<br>defect pixels shown: {int(fidelity['shown'].sum())}"
        )

    def title(self, combo, method: str) -> str:
        """The caption (HTML): the sources (with their weights where not 1) and the method (with w
        for "weighted"), or the clicked point while its decode is shown."""
        weights = self.weights
        names = " + ".join(
            html.escape(self.setup.names[i]) + (f" ×{weights[i]:.2f}" if weights[i] != 1 else "")
            for i in combo
        )
        label = html.escape(METHODS[method])
        if self.placed is not None:
            z = ", ".join(f"{value:.2f}" for value in self.placed)
            return f"{names} · decode at the clicked z = ({z}); move a control for the {label}"
        return f"{names} · {label}" + (
            f", w = {self.weight.value:.2f}" if method == "weighted" else ""
        )

    # ------------------------------------------------------------------ events
    def on_change(self, change) -> None:
        """A control moved: from a clicked point back to the method's overlay, redrawn."""
        self.placed = None
        self.update()

    def on_plane_click(self, event: dict) -> None:
        """ipyevents click on the plane: `dataX`, `dataY` are the clicked pixel in the PNG's own
        pixels."""
        self.place_at_pixel(event["dataY"], event["dataX"])

    def place_at_pixel(self, row: float, column: float) -> None:
        """Show the decode of the latent point under a pixel of the plane; its coordinates beyond
        the plane's two are the shown z's (the encoded background's when the overlay has no latent
        vector)."""
        shown = self.result.get("z")
        around = self.z_background["image"] if shown is None else shown
        self.placed = self.latent_plane.latent(row, column, around)
        self.update()

    def update(self) -> None:
        """Recompute the overlay (or decode the clicked point) and its score for the current
        controls and redraw: the image first (the latency that matters), the plane only if its ring
        moved, then the texts."""
        method, combo = self.method.value, self.chosen
        self.weight.disabled = method != "weighted"
        self.background_from.disabled = not overlay_methods.METHODS[method].around_z_bg
        for i, (thumbnail, weight_slider) in enumerate(zip(self.thumbnails, self.source_weights)):
            thumbnail.layout.border = (
                f"3px solid {self.css_colour(i) if i in combo else 'transparent'}"
            )
            weight_slider.disabled = i not in combo
        if len(combo) < 2:
            self.score_text.value = (
                f"<b>Tick at least two sources to overlay</b> ({len(combo)} ticked)."
            )
            self.score_text.add_class("overlay-warning")
            return
        self.score_text.remove_class("overlay-warning")
        settings = (method, self.weight.value, self.background_from.value, self.weights)
        z = self.placed if self.placed is not None else self.latent_point(combo, *settings)
        if z is None:
            image = self.overlay_image(combo, *settings)
        else:
            image = self.decode(z[None, :].astype(np.float32))[0]
        self.image.value = self.render(image, combo)
        if self.latent_plane.spot(z) != self.shown_spot:
            self.plane.value, self.shown_spot = self.latent_plane.png(z), self.latent_plane.spot(z)
        self.result = {
            "combo": combo,
            "method": method,
            "weight": self.weight.value,
            "weights": self.weights,
            "background_from": self.background_from.value,
            "z": z,
            "placed": self.placed is not None,
            "image": image,
            "fidelity": self.score(combo, image),
        }
        self.caption.value = self.title(combo, method)
        self.score_text.value = self.describe(combo, self.result["fidelity"])

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
