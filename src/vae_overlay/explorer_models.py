"""The latent explorer's other models: representative runs of the Section 3 study, re-trained and
stored.

Notebook 04's explorer opens on the default run's VAE (notebook 02); its model menu
(`model_picker.ModelPicker`) also offers one run per `ROLES` entry of the Section 3 study
(results/studies/section3.csv): the most crack-like run, one that reaches the paper's box, and a
collapsed one. The study's own models live in git-ignored artifacts/studies/, so a fresh clone has
none: `write_models` trains the representatives again from their table rows
(`section3_study.load_run`: the study's training, same settings and seed), measures what the
re-trained model shows (`section3_study.measure`; a training on another CPU type is another draw, so
a run may lose the property it was picked for: the next candidate is tried then), and stores each
decoder with the latent means of its training images in results/models/ (`MANIFEST` lists them). The
explorer needs only the decoder; the images come from the data source, as in every notebook.
results/models/README.md gives the sizes and re-training times that decided between storing the
models and re-training them on demand.

    # re-train and store the representatives (minutes):
    python -m vae_overlay.explorer_models --write
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_overlay import datasets, model, runs, section3_study, study, train
from vae_overlay.config import ELPV_DATASETS, ROOT

MODELS_DIR = ROOT / "results" / "models"
MANIFEST = "models.json"
DECODER_FILE = "decoder.keras"
STUDY_TABLE = ROOT / "results" / "studies" / "section3.csv"
# where `write_models` trains (git-ignored, resumable)
WORK_DIR = ROOT / "artifacts" / "explorer-models"
SETTINGS = (
    "data",
    "image_size",
    "loss",
    "seed",
    "latent_dim",
    "epochs",
    "batch_size",
    "learning_rate",
)
# what a table row and a re-trained model are compared on
SHOWN = (
    "active_units",
    "collapsed",
    "crack_fraction_occupied",
    "crack_fraction_box",
    "reach",
    "box_reached",
    "extent_any",
)
# "most crack-like" still holds if the re-trained share is in the table's top 10 %
CRACK_LIKE_QUANTILE = 0.9
# role -> (folder in MODELS_DIR, how the menu calls it)
ROLES = {
    "crack-like": ("most-crack-like", "most crack-like"),
    "box": ("reaches-paper-box", "reaches the paper's box"),
    "collapsed": ("collapsed", "collapsed"),
}


def settings_label(settings: dict) -> str:
    """A run's settings as the menu shows them: 'elpv-crack-patches, 64 px, loss sum, seed 0' (no
    hashes)."""
    return (
        f"{settings['data']}, {settings['image_size']} px, loss {settings['loss']}, "
        f"seed {settings['seed']}"
    )


def shown(row: dict) -> dict:
    """The values of `SHOWN` for a table row or a measurement (reach and extents computed from its
    means)."""
    values = {**row, "reach": round(section3_study.reach(row), 3), **section3_study.extents(row)}
    return {key: values[key] for key in SHOWN}


def candidates(rows: list[dict]) -> dict[str, list[dict]]:
    """Per role, the finished study rows that could represent it, best first:
    - crack-like: runs on the ELPV images (the paper's data; synthetic images are the control) that
      did not collapse, by their crack-like share of the occupied region (the region the sliders
      span). The largest share of all, 1.0, belongs to collapsed synthetic runs, where every decode
      is the same crack-like image;
    - box: runs that reach the paper's box, those that reach its own edge (|z1| >= 15 or |z2| >= 10,
      `section3_study.extents`) first, then by their crack-like share over the box;
    - collapsed: collapsed ELPV runs, those of the configuration that collapsed most often first
      (the likeliest to collapse again when re-trained), then by seed."""
    done = [row for row in rows if not row.get("error")]
    elpv = [row for row in done if row["data"] in ELPV_DATASETS]
    rates = {
        tuple(values.values()): np.mean([row["collapsed"] for row in group])
        for values, group in study.grouped(done, ("data", "image_size", "loss"))
    }
    return {
        "crack-like": sorted(
            (row for row in elpv if not row["collapsed"]),
            key=lambda r: -r["crack_fraction_occupied"],
        ),
        "box": sorted(
            (row for row in done if row["box_reached"]),
            key=lambda r: (not section3_study.extents(r)["extent_any"], -r["crack_fraction_box"]),
        ),
        "collapsed": sorted(
            (row for row in elpv if row["collapsed"]),
            key=lambda r: (-rates[(r["data"], r["image_size"], r["loss"])], r["seed"]),
        ),
    }


def still_shows(role: str, measured: dict, rows: list[dict]) -> bool:
    """Whether a re-trained model (its `shown` values) has the property its role was picked for:
    crack-like: not collapsed, and a crack-like share of the occupied region in the top 10 % of the
    table's non-collapsed ELPV runs; box: the paper's box reached (the study's rule, `box_reached`);
    collapsed: collapsed."""
    if role == "crack-like":
        shares = [row["crack_fraction_occupied"] for row in candidates(rows)["crack-like"]]
        top = np.quantile(shares, CRACK_LIKE_QUANTILE)
        return not measured["collapsed"] and measured["crack_fraction_occupied"] >= top
    return bool(measured["box_reached"] if role == "box" else measured["collapsed"])


@dataclass
class StoredModel:
    """One stored representative: its role, the study row's settings and key, what the study table
    recorded (`table`) and what the stored, re-trained model shows (`measured`), the latent means of
    its training images (in the data source's order, with their names and fingerprint), the seconds
    its re-training took here, and the sizes of its stored decoder and of the whole trained VAE file
    (KB)."""

    role: str
    folder: str
    key: str
    settings: dict
    table: dict
    measured: dict
    means: list
    names: list
    images_sha256: str
    retrain_seconds: float
    decoder_kb: float
    vae_kb: float | None

    @property
    def name(self) -> str:
        """The menu's name: '<role>: <settings>'."""
        return f"{ROLES[self.role][1]}: {settings_label(self.settings)}"

    def load(self, models_dir: str | Path = MODELS_DIR) -> dict:
        """The explorer's inputs: {decoder, latent_means, names, images}. The images are the data
        source's (`section3_study.training_images`), checked by fingerprint to be the ones the model
        was trained on."""
        import keras

        images = section3_study.training_images(self.settings["data"], self.settings["image_size"])
        if runs.fingerprint(images) != self.images_sha256:
            source = f"{self.settings['data']} at {self.settings['image_size']} px"
            raise runs.RunMismatch(
                f"{self.name}: the images of {source} are not the ones this model was "
                "trained on (their hash differs): run "
                "`python -m vae_overlay.explorer_models --write`"
            )
        path = Path(models_dir) / self.folder / DECODER_FILE
        decoder = keras.saving.load_model(path, safe_mode=True)
        weights = [(weight.path, weight.numpy()) for weight in decoder.weights]
        runs.check_finite(weights, path, "not loaded", "Write it again.")
        return {
            "decoder": decoder,
            "latent_means": np.asarray(self.means, np.float64),
            "names": self.names,
            "images": images,
        }


def read_models(models_dir: str | Path = MODELS_DIR) -> list[StoredModel]:
    """The stored representatives in `MANIFEST`'s order; [] without a manifest."""
    path = Path(models_dir) / MANIFEST
    if not path.is_file():
        return []
    return [StoredModel(**entry) for entry in runs.read_json(path, "model manifest")["models"]]


def retrain(row: dict, work_dir: str | Path) -> tuple:
    """(vae, images, seconds, measured values) of a study row trained again in `work_dir/<key>/` (or
    loaded from there if it is done already: then `seconds` is the loading time)."""
    started = time.perf_counter()
    vae, images = section3_study.load_run(row, work_dir)
    seconds = time.perf_counter() - started
    return vae, images, seconds, section3_study.measure(vae, images)


def store(
    role: str,
    row: dict,
    vae,
    images,
    seconds: float,
    measured: dict,
    models_dir: Path,
    work_dir: Path,
) -> StoredModel:
    """Save the decoder in `models_dir/<role's folder>/` and return its manifest entry."""
    folder = ROLES[role][0]
    path = models_dir / folder / DECODER_FILE
    with runs.atomic_path(path, suffix=".keras") as tmp:
        vae.decoder.save(tmp)
    means = model.encode_mean(vae, images)
    names = datasets.load_source(row["data"], row["image_size"]).names
    trained = section3_study.run_folder(work_dir, row["key"]) / train.MODEL_FILE
    return StoredModel(
        role=role,
        folder=folder,
        key=row["key"],
        settings={key: row[key] for key in SETTINGS},
        table=shown(row),
        measured=shown(measured),
        means=np.round(means, 6).tolist(),
        names=list(names),
        images_sha256=runs.fingerprint(images),
        retrain_seconds=round(seconds, 1),
        decoder_kb=round(path.stat().st_size / 1024, 1),
        vae_kb=round(trained.stat().st_size / 1024, 1) if trained.is_file() else None,
    )


def write_models(
    models_dir: str | Path = MODELS_DIR,
    work_dir: str | Path = WORK_DIR,
    table: str | Path = STUDY_TABLE,
    tries: int = 3,
    roles=tuple(ROLES),
) -> list[StoredModel]:
    """Re-train each role's candidates in turn (at most `tries`) until one still shows its property,
    store it, and rewrite `MANIFEST` (the other stored roles are kept). A try whose training
    diverges is skipped; if no try shows the property, the last one trained is stored (its
    `measured` values say what it shows)."""
    rows, models_dir = study.read_table(table), Path(models_dir)
    kept = {entry.role: entry for entry in read_models(models_dir) if entry.role not in roles}
    for role in roles:
        last = None
        for attempt, row in enumerate(candidates(rows)[role][:tries], 1):
            try:
                vae, images, seconds, measured = retrain(row, work_dir)
            except (
                train.TrainingDiverged,
                runs.NonFiniteState,
            ) as error:  # this CPU's draw diverged
                print(
                    f"{role}: try {attempt}, {settings_label(row)}: {type(error).__name__}",
                    flush=True,
                )
                continue
            verdict = still_shows(role, shown(measured), rows)
            print(
                f"{role}: try {attempt}, {settings_label(row)}: re-trained in {seconds:.0f} s, "
                f"{'still shows it' if verdict else 'does not show it'}: {shown(measured)} "
                f"(study table: {shown(row)})",
                flush=True,
            )
            last = (row, vae, images, seconds, measured)
            if verdict:
                break
        if last is not None:
            kept[role] = store(role, *last, models_dir, Path(work_dir))
            entries = [kept[name].__dict__ for name in ROLES if name in kept]
            runs.atomic_write_text(
                models_dir / MANIFEST, json.dumps({"models": entries}, indent=1) + "\n"
            )
    return [kept[role] for role in ROLES if role in kept]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--write", action="store_true", help="re-train the representatives and store them"
    )
    parser.add_argument("--models-dir", default=str(MODELS_DIR))
    parser.add_argument(
        "--work-dir", default=str(WORK_DIR), help="where the trainings run (resumable; git-ignored)"
    )
    parser.add_argument(
        "--role", action="append", choices=list(ROLES), help="only these (default: all)"
    )
    args = parser.parse_args(argv)
    if args.write:
        write_models(args.models_dir, args.work_dir, roles=tuple(args.role or ROLES))
    for entry in read_models(args.models_dir):
        print(
            f"{entry.name}: {entry.decoder_kb:.0f} KB, re-trained in {entry.retrain_seconds:.0f} s;"
            f" {entry.measured}"
        )


if __name__ == "__main__":
    main()
