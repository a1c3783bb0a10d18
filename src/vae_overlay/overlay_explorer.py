"""Notebook 05's interactive overlay explorer: pick sources, an overlay method and a weight; see the overlay, the
outlines of the chosen sources' defect masks on it, and its fidelity score, redrawn as the controls change.

The overlay methods are `vae_overlay.overlay`'s (`overlay_latent`, `pixel_overlay`, `fidelity`), computed as
`overlay_experiment` computes them for notebook 05's table (a test checks that they agree), with the slow parts
done once: the sources' latent means, both background vectors z_bg and the decoded cluster centres are cached
when the explorer is made, so a change decodes at most one latent vector.
"""
from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
from matplotlib import colormaps

from vae_overlay import overlay
from vae_overlay import overlay_experiment as experiment
from vae_overlay.latent import compiled_decoder
from vae_overlay.widgets import png_bytes

# method key -> label in the menu; the latent keys are overlay.OVERLAY_METHODS, "composite" is generate_overlays'
METHODS = {
    "sum": "latent sum (paper)",
    "mean": "latent mean",
    "offset": "offset sum: z_bg + Σ(z_i − z_bg)",
    "weighted": "weighted offset: z_bg + w·Σ(z_i − z_bg)",
    "composite": "decoded compositing (darkest decoded pixel)",
    "pixel mean": experiment.PIXEL_MEAN,
    "pixel darkest": experiment.PIXEL_COMPOSITING,
}
BACKGROUNDS = {"image": "z_bg: encoded background", "centres": "z_bg: mean of centres"}  # latent_method's names


def outline(mask) -> np.ndarray:
    """The pixels just outside a boolean mask that touch it (4-neighbourhood): its contour, drawn around the mask
    so that the mask's own pixels stay visible."""
    mask = np.asarray(mask, bool)
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown & ~mask


def upscale(pixels, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of the first two axes by an integer factor."""
    return np.asarray(pixels).repeat(factor, axis=0).repeat(factor, axis=1)


def to_rgb(image) -> np.ndarray:
    """A float image (s, s) or (s, s, 1) in [0, 1] (clipped) as uint8 RGB (s, s, 3)."""
    grey = np.round(np.clip(np.asarray(image, np.float64).reshape(np.shape(image)[:2]), 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


class OverlayExplorer:
    """Overlay the chosen sources with the chosen method; show it with mask outlines, the sources and the score.

    `OverlayExplorer(setup, vae)`: `setup` is notebook 05's `overlay_experiment.Setup` (sources, masks, names,
    background, threshold) and `vae` a trained model with `.encoder` and `.decoder` (`fixed["vae"]`). Display it as
    the last expression of a cell. Controls: a tick box under every source thumbnail (two or more), the method
    (`METHODS`), the weight w of the weighted offset sum, where z_bg comes from (`BACKGROUNDS`, as in
    `overlay_experiment.latent_method`), and whether to draw the outlines. Latent vectors are the encoder means.
    Without masks the overlay is shown but not scored. `overlay_image` and `score` are the computations alone.
    """

    def __init__(self, setup: experiment.Setup, vae, *, method: str = "sum", weight: float = 1.0, chosen=None,
                 image_px: int = 256, thumb_px: int = 128):
        self.setup = setup
        self.sources = np.asarray(setup.sources, np.float32)
        self.k, size = len(self.sources), self.sources.shape[1]
        if self.k < 2:
            raise ValueError(f"the explorer needs at least two source images, got {self.k}")
        self.decode = compiled_decoder(vae.decoder)
        self.z_mean = overlay.posterior(vae.encoder, self.sources)[0]  # the cluster centres, once
        self.z_background = {"image": overlay.posterior(vae.encoder, setup.background[None, ..., None])[0][0],
                             "centres": self.z_mean.mean(axis=0)}
        self.decoded_centres = self.decode(self.z_mean)  # decoded compositing needs no decoding per change
        self.factor = max(1, round(image_px / size))
        self.colours = [tuple(int(255 * c) for c in colormaps["tab10"](i % 10)[:3]) for i in range(self.k)]
        self.outlines = None if setup.masks is None else [outline(upscale(m, self.factor)) for m in setup.masks]
        self.result = {}  # the latest overlay: combo, method, weight, background_from, image, fidelity

        shown_px = str(size * self.factor)
        self.image = widgets.Image(format="png", width=shown_px, height=shown_px)
        self.method = widgets.Dropdown(options=[(label, key) for key, label in METHODS.items()], value=method,
                                       description="method", layout=widgets.Layout(width="420px"))
        self.weight = widgets.FloatSlider(value=weight, min=0.0, max=3.0, step=0.05, description="weight w",
                                          readout_format=".2f", continuous_update=True, layout=widgets.Layout(width="420px"))
        self.background_from = widgets.ToggleButtons(options=[(label, key) for key, label in BACKGROUNDS.items()],
                                                     value="image", style={"button_width": "205px"})
        self.show_outlines = widgets.Checkbox(value=True, description="outline the chosen sources' masks", indent=False)
        self.caption, self.score_text = widgets.HTML(), widgets.HTML()
        chosen = range(self.k) if chosen is None else chosen
        self.ticks = [widgets.Checkbox(value=i in chosen, description=name, indent=False,
                                       layout=widgets.Layout(width="auto"))
                      for i, name in enumerate(setup.names)]
        thumb_factor = max(1, round(thumb_px / size))
        self.thumbnails = [widgets.Image(value=self.thumbnail(i, thumb_factor), format="png",
                                         layout=widgets.Layout(border=f"3px solid {self.css_colour(i)}"))
                           for i in range(self.k)]
        for name, widget in [("image", self.image), ("method", self.method), ("weight", self.weight),
                             ("background", self.background_from), ("outlines", self.show_outlines),
                             ("caption", self.caption), ("score", self.score_text)]:
            widget.add_class(f"overlay-{name}")  # CSS classes: stable handles for the browser test
        for i, (tick, thumbnail) in enumerate(zip(self.ticks, self.thumbnails)):
            tick.add_class(f"overlay-source-{i}")
            thumbnail.add_class(f"overlay-thumbnail-{i}")
        for control in [self.method, self.weight, self.background_from, self.show_outlines, *self.ticks]:
            control.observe(self.on_change, names="value")
        controls = widgets.VBox([self.method, self.background_from, self.weight, self.show_outlines, self.caption,
                                 self.score_text], layout=widgets.Layout(margin="0 0 0 12px"))
        sources = widgets.HBox([widgets.VBox([t, c]) for t, c in zip(self.thumbnails, self.ticks)])
        self.widget = widgets.VBox([widgets.HBox([self.image, controls]), sources])
        self.widget.add_class("overlay-explorer")
        self.update()

    # ------------------------------------------------------------------ computations
    @property
    def chosen(self) -> tuple[int, ...]:
        """Indices of the ticked sources."""
        return tuple(i for i, tick in enumerate(self.ticks) if tick.value)

    def css_colour(self, i: int) -> str:
        """Source i's outline colour as CSS (the notebook's tab10 colours, as in its latent scatter)."""
        return "rgb({}, {}, {})".format(*self.colours[i])

    def overlay_image(self, combo, method: str, weight: float = 1.0, background_from: str = "image") -> np.ndarray:
        """The overlay (s, s, 1) float32 of the sources `combo` (indices, at least two) by `method` (a key of METHODS).

        weight is used by "weighted" only, background_from ("image" or "centres") by "offset" and "weighted"."""
        combo = list(combo)
        if len(combo) < 2:
            raise ValueError(f"an overlay needs at least two sources, got {len(combo)} "
                             f"({', '.join(self.setup.names[i] for i in combo) or 'none'}): choose two or more")
        if not all(0 <= i < self.k for i in combo):
            raise ValueError(f"source indices must lie in 0..{self.k - 1}, got {combo}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
        if background_from not in BACKGROUNDS:
            raise ValueError(f"background_from must be one of {list(BACKGROUNDS)}, got {background_from!r}")
        if method.startswith("pixel "):
            return overlay.pixel_overlay(self.sources[combo], method.split()[1])
        if method == "composite":  # decode each chosen centre (cached) and keep the darkest pixel
            return overlay.pixel_overlay(self.decoded_centres[combo], "darkest")
        z = overlay.overlay_latent(self.z_mean[combo], method, self.z_background[background_from], weight)
        return self.decode(z[None, :])[0]

    def score(self, combo, image) -> dict | None:
        """`overlay.fidelity` of an overlay of `combo` against those sources' masks (None without masks)."""
        if self.setup.masks is None:
            return None
        return overlay.fidelity(image, self.setup.masks[list(combo)], self.setup.background, self.setup.threshold)

    # ------------------------------------------------------------------ drawing
    def thumbnail(self, i: int, factor: int) -> bytes:
        """PNG of source i enlarged by `factor`, with its own mask outlined in its colour."""
        pixels = upscale(to_rgb(self.sources[i]), factor)
        if self.setup.masks is not None:
            pixels[outline(upscale(self.setup.masks[i], factor))] = self.colours[i]
        return png_bytes(pixels)

    def render(self, image, combo) -> bytes:
        """PNG of an overlay enlarged to the display size, the masks of `combo` outlined (if ticked)."""
        pixels = upscale(to_rgb(image), self.factor)
        if self.outlines is not None and self.show_outlines.value:
            for i in combo:
                pixels[self.outlines[i]] = self.colours[i]
        return png_bytes(pixels)

    def describe(self, combo, fidelity: dict | None) -> str:
        """The score lines (HTML) for the fidelity of an overlay of `combo`."""
        if fidelity is None:
            return "no <code>&lt;name&gt;_mask.*</code> beside every source: fidelity is not scored"
        recall = ", ".join(f"{html.escape(self.setup.names[i])} {r:.2f}"
                           for i, r in zip(combo, fidelity["recall"]))
        return (f"fidelity score <b>{fidelity['score']:.2f}</b> = mean recall {fidelity['mean_recall']:.2f} × "
                f"(1 − spurious {fidelity['spurious']:.2f})<br>recall: {recall}<br>"
                f"defect pixels shown: {int(fidelity['shown'].sum())}")

    def on_change(self, change) -> None:
        self.update()

    def update(self) -> None:
        """Recompute the overlay and its score for the current controls and redraw (one decode at most)."""
        method, combo = self.method.value, self.chosen
        self.weight.disabled = method != "weighted"
        self.background_from.disabled = method not in ("offset", "weighted")
        for i, thumbnail in enumerate(self.thumbnails):
            thumbnail.layout.border = f"3px solid {self.css_colour(i) if i in combo else 'transparent'}"
        if len(combo) < 2:
            self.score_text.value = f"<b>Tick at least two sources to overlay</b> ({len(combo)} ticked)."
            self.score_text.add_class("overlay-warning")
            return
        self.score_text.remove_class("overlay-warning")
        image = self.overlay_image(combo, method, self.weight.value, self.background_from.value)
        self.result = {"combo": combo, "method": method, "weight": self.weight.value,
                       "background_from": self.background_from.value, "image": image,
                       "fidelity": self.score(combo, image)}
        self.image.value = self.render(image, combo)
        detail = f", w = {self.weight.value:.2f}" if method == "weighted" else ""
        self.caption.value = (" + ".join(html.escape(self.setup.names[i]) for i in combo)
                              + f" · {html.escape(METHODS[method])}{detail}")
        self.score_text.value = self.describe(combo, self.result["fidelity"])

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
