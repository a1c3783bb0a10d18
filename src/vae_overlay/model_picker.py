"""A model menu above the latent explorer: the default run's VAE or a stored Section 3 study
representative.

Each model gets its own `widgets.LatentExplorer` (built when first chosen, then kept), so the
decoder, the sliders' ranges, the scatter of latent means, the nearest-training-image lookup and the
crack-score readout always belong to the same model; choosing a model swaps the explorer shown under
the menu. The representatives are those `explorer_models.write_models` stored (results/models/).
"""

from __future__ import annotations

from pathlib import Path

import ipywidgets as widgets

from vae_overlay import explorer_models, train
from vae_overlay.widgets import LatentExplorer


def run_label(run_dir: str | Path, dataset: str) -> str:
    """The default run's menu name, from the settings notebook 02 recorded in its history:
    'default run (notebook 02): elpv-crack-patches, 64 px, loss sum, seed 42'."""
    settings = train.read_history(Path(run_dir) / train.HISTORY_FILE)["settings"]
    return "default run (notebook 02): " + explorer_models.settings_label(
        {**settings, "data": dataset}
    )


def describe(entry: explorer_models.StoredModel) -> str:
    """What a stored model shows here (measured on the stored model), as one line of HTML."""
    shown = entry.measured
    if shown["collapsed"]:
        what = "collapsed: every training image has (almost) the same latent mean"
    else:
        what = (
            f"{shown['active_units']} active latent unit(s), latent means reach"
            f" {shown['reach']:.1f}" + (" (the paper's box)" if shown["box_reached"] else "")
        )
    return (
        f"<span style='font-size: 11px; color: #555'>{what}; decodes scoring like a training crack:"
        f" {100 * shown['crack_fraction_occupied']:.0f} % of the occupied region,"
        f" {100 * shown['crack_fraction_box']:.0f} % of the paper's box (Section 3 study run,"
        " re-trained)</span>"
    )


class ModelPicker:
    """A `model` menu (CSS class `latent-model`) over the explorer of the chosen model. `default` is
    the explorer of the default run, named `default_name` in the menu; the stored representatives
    (`explorer_models.read_models` of `models_dir`) follow, each opened with the default's step and
    image size. `explorers` holds the explorers built so far by menu name; `current` is the one
    shown; `note` says what a stored model shows. Display it as the last expression of a cell."""

    def __init__(
        self, default: LatentExplorer, default_name: str, models_dir=explorer_models.MODELS_DIR
    ):
        self.models_dir = models_dir
        self.stored = {entry.name: entry for entry in explorer_models.read_models(models_dir)}
        self.explorers = {default_name: default}
        self.options = {"step": default.step, "image_px": default.image_px}
        self.menu = widgets.Dropdown(
            options=[default_name, *self.stored],
            value=default_name,
            description="model",
            layout=widgets.Layout(width="620px"),
        )
        self.menu.add_class("latent-model")
        self.note = widgets.HTML()
        self.note.add_class("latent-model-note")
        self.body = widgets.Box([default.widget])
        self.menu.observe(lambda change: self.choose(change["new"]), names="value")
        self.widget = widgets.VBox([self.menu, self.note, self.body])
        self.widget.add_class("latent-model-picker")

    @property
    def current(self) -> LatentExplorer:
        """The explorer of the model chosen in the menu."""
        return self.explorers[self.menu.value]

    def explorer(self, name: str) -> LatentExplorer:
        """The explorer of model `name` (a menu entry), built on first use."""
        if name not in self.explorers:
            self.explorers[name] = LatentExplorer(
                **self.stored[name].load(self.models_dir), **self.options
            )
        return self.explorers[name]

    def choose(self, name: str) -> None:
        """Show model `name`'s explorer (the menu calls this when it changes)."""
        if self.menu.value != name:
            self.menu.value = name  # observed: comes back here
            return
        entry = self.stored.get(name)
        self.note.value = (
            "<span style='font-size: 11px; color: #555'>loading…</span>" if entry else ""
        )
        self.body.children = [self.explorer(name).widget]
        self.note.value = describe(entry) if entry else ""

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
