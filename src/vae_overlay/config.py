"""Runs of the notebook series: one configuration per run, a folder per run, and the checks between
notebooks.

A *run* is the series executed with one set of parameters. The parameters are the names in the
notebooks' cells tagged ``parameters`` (DATASET, IMAGE_SIZE, LATENT_DIM, SEED, EPOCHS, ...); a name
means the same thing in every notebook that has it, and papermill injects the run's value into every
notebook that has the name, so a notebook cannot silently analyse another dataset or size than the
one before it.

- **The default run** (no parameter changed) executes the committed notebooks in place and writes
  ``results/``: that is how the committed outputs are made.
- **Any other run** writes nothing outside its own folder ``runs/<name>/``: ``run.yaml`` (its
  parameters, reusable with ``make reproduce RUN_CONFIG=runs/<name>/run.yaml`` or ``papermill -f``),
  ``notebooks/`` (the executed notebooks), ``figures/``, ``summary.json``, ``REPORT.md`` and
  ``artifacts/`` (datasets, models). The name is the dataset's name plus a hash of the parameters
  and of the folder's file list, so two folders called ``mine``, or one folder after an edit, never
  share a run; the same run started again reuses what it finished.

``load_trained`` is how notebooks 03 and 04 open notebook 02's model with notebook 01's images: it
checks by hash that they belong together and names the notebook to re-run when they do not.

`vae_overlay.reproduce` executes a run (`make reproduce`).
"""

from __future__ import annotations

import ast
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vae_overlay import data, datasets, paper
from vae_overlay.runs import NonFiniteState, RunMismatch, fingerprint, folder_name

ROOT = data.project_root()
NOTEBOOK_DIR = ROOT / "notebooks"
# Notebooks that do not apply to every run: notebook -> (the DATASETs of a run it applies to, why
# it is skipped in a run on another one). 06 uses the labelled ELPV cells itself, whatever DATASET
# is, so it runs with the ELPV built-ins (the default run's crack patches included) and is skipped
# for synthetic images or a folder (a run about other images); 05b and 07 show committed studies.
ELPV_DATASETS = ("elpv-crack-patches", "elpv-cracks")
APPLIES_ONLY_TO = {
    "06": (
        ELPV_DATASETS,
        (
            "DATASET is not one of the ELPV sets (elpv-crack-patches, elpv-cracks): "
            "notebook 06 classifies the ELPV cells labelled defective and "
            "functional, which a run on other images is not about"
        ),
    ),
    "05b": ((), "it shows the committed Section 4 studies (make study extends them), not this run"),
    "07": ((), "it shows the committed Section 3 study (make study extends it), not this run"),
}
FOLDERS = ("ARTIFACTS_DIR", "FIGURES_DIR", "RESULTS_DIR")  # set by the run, not by the user
_SHARED = {
    "DATASET": "elpv-crack-patches",
    "IMAGE_SIZE": 64,
    "SEED": 42,
    "ARTIFACTS_DIR": "../artifacts",
    "FIGURES_DIR": "../results/figures",
}
_PAPER = {key.upper(): value for key, value in paper.TRAINING.items()}  # the paper's Section 3
_BOX = {"Z1_RANGE": paper.Z1_RANGE, "Z2_RANGE": paper.Z2_RANGE}  # the paper's sampling region
# The committed defaults of every notebook's parameters cell (a test checks that the cells say the
# same): what `output_folder` compares with, since a notebook edited in JupyterLab is saved with the
# user's values.
DEFAULTS = {
    "01": dict(_SHARED),
    "02": {**_SHARED, **_PAPER, "RETRAIN": False, "STREAMING": False},
    "03": {**_SHARED, "LATENT_DIM": paper.LATENT_DIM, **_BOX},
    "04": {
        **_SHARED,
        "LATENT_DIM": paper.LATENT_DIM,
        **_BOX,
        "STEP": paper.STEP,
        "SHOW_EVERY": 2.5,
        "FULL_SWEEP": True,
        "DECODE_BATCH_SIZE": 64,
        "PATH_ENDS": None,
        "PATH_STEPS": 12,
        "STRETCH": True,
    },
    "05": {
        **_SHARED,
        "OVERLAY_IMAGES": None,
        "LATENT_DIM": paper.LATENT_DIM,
        "COPIES": paper.COPIES,
        "OVERLAY_EPOCHS": paper.OVERLAY_EPOCHS,
        "BATCH_SIZE": paper.BATCH_SIZE,
        "LEARNING_RATE": paper.LEARNING_RATE,
        "RETRAIN": False,
        "FIXED_VARIANT": "standardised + leaky",
        "WEIGHTS": [0.5, 0.75, 1.25, 1.5, 2.0],
        "N_LATENT_SAMPLES": 500,
    },
    "05b": {
        "VARIANT_STUDY": "section4",
        "DIMS_STUDY": "section4-dims",
        "SETS_STUDY": "section4-sets",
        "REALISM_STUDY": "latent-realism",
        "STUDY_RESULTS_DIR": "../results",
        "RUN_STUDIES": False,
        "WORKERS": None,
        "SCHEDULER": None,
        "ARTIFACTS_DIR": "../artifacts",
        "FIGURES_DIR": "../results/figures",
    },
    "06": {
        "MODULE_TYPE": "mono",
        **{k: _SHARED[k] for k in ("IMAGE_SIZE", "SEED", "ARTIFACTS_DIR", "FIGURES_DIR")},
        **_PAPER,
        "VAE_ATTEMPTS": 3,
        "RETRAIN": False,
        "N_SEEDS": 2,
        "TEST_FRACTION": 0.5,
        "N_TRAIN_PER_CLASS": 80,
        "N_VAL_PER_CLASS": 20,
        "N_GENERATED_PER_CLASS": 80,
        "OVERLAY_METHOD": "sum",
        "CLASSIFIER_STEPS": 500,
        "CLASSIFIER_BATCH_SIZE": 32,
        "CLASSIFIER_LEARNING_RATE": 1e-3,
        "CHECK_EVERY": 25,
        "STUDY": "classifier",
        "STUDY_RESULTS_DIR": "../results",
        "RUN_STUDY": False,
        "WORKERS": None,
    },
    "07": {
        "STUDY": "section3",
        "RESULTS_DIR": "../results",
        "ARTIFACTS_DIR": "../artifacts",
        "FIGURES_DIR": "../results/figures",
        "RUN_STUDY": False,
        "WORKERS": None,
        "SCHEDULER": None,
        "REPRESENTATIVE_DATA": ("elpv-crack-patches", 64, "sum"),
    },
}
MAX_SAMPLE = 3000  # images of a streamed dataset that notebooks 03 and 04 analyse (an even sample)


def number(notebook: str | Path) -> str:
    """A notebook's place in the series, the part of its name before the first '_': "05", "05b"."""
    return Path(notebook).name.split("_")[0]


def notebooks(folder: str | Path = NOTEBOOK_DIR) -> list[Path]:
    """The series, in order: notebooks/0*.ipynb."""
    return sorted(Path(folder).glob("0*.ipynb"))


def parameters(notebook: str | Path) -> dict:
    """Name -> default value of the assignments in a notebook's cell tagged `parameters`."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    tagged = [cell for cell in cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(
            f"{notebook} needs exactly one cell tagged 'parameters', found {len(tagged)}"
        )
    source = "".join(tagged[0]["source"])
    values = {}
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def parse_assignments(items: list[str]) -> dict:
    """["NAME=value", ...] from a command line -> {NAME: value}.

    Values are Python literals where they parse as one (128, 2e-3, False, [42, 43], (-15, 15)), else
    text.
    """
    parsed = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"{item!r} is not NAME=value (for example IMAGE_SIZE=128)")
        try:
            parsed[name] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            parsed[name] = text
    return parsed


@dataclass
class Run:
    """What `plan` decided: the run's name and folder (None for the default run), its notebooks and
    parameters."""

    name: str
    folder: Path | None
    notebooks: list[Path]
    parameters: dict
    skipped: dict = field(default_factory=dict)  # notebook name -> why it does not apply

    @property
    def is_default(self) -> bool:
        return self.folder is None


def as_list(value):
    """A parameter value compared and hashed alike whether written as a tuple (a notebook) or a list
    (YAML)."""
    return list(value) if isinstance(value, tuple) else value


def differing(values: dict, *defaults: dict) -> dict:
    """The entries of `values` that differ from their default in any of `defaults` (names without
    one are left out)."""
    return {
        k: v
        for k, v in values.items()
        if any(k in d and as_list(v) != as_list(d[k]) for d in defaults)
    }


def run_identity(changes: dict, series_dataset: str = ELPV_DATASETS[0]) -> tuple[str, dict]:
    """(run name, changes with DATASET made absolute) for parameters that differ from the committed
    defaults: the dataset's name plus a hash of the changes and of a folder's file list (two folders
    called `mine`, or one folder after an edit, never share a run). `make reproduce` and a notebook
    executed in place name a run alike."""
    changes = {k: as_list(v) for k, v in changes.items()}
    dataset = str(changes.get("DATASET", series_dataset))
    custom_data = dataset not in datasets.BUILT_IN
    listing = []
    if custom_data:
        folder = data.resolve_folder(dataset).resolve()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"DATASET={dataset!r}: no such folder (looked for {folder}); give a folder of "
                f"images or one of {list(datasets.BUILT_IN)}"
            )
        changes["DATASET"] = dataset = str(folder)
        listing = sorted(
            (str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file()
        )
    label = Path(dataset).name if custom_data else dataset
    return folder_name(label, {"parameters": changes, "files": listing}, 8), changes


def output_folder(notebook: str, values: dict, runs_dir: str | Path | None = None) -> str:
    """FIGURES_DIR for notebook `notebook` ("01_prepare_dataset" or its number) executed where it is
    (JupyterLab, nbval, papermill), from its parameters' values (`globals()` will do): with every
    parameter at its committed default (`DEFAULTS`), the committed FIGURES_DIR (results/figures;
    summary.json beside it); with any other value, the figures folder of the run `make reproduce`
    would make of those changes, runs/<name>/figures, said in a printed line, so a user's images
    never overwrite the committed results. A FIGURES_DIR that differs from the default (a `make
    reproduce` run sets its own) is kept as given. `runs_dir`: default the environment's
    VAE_OVERLAY_RUNS_DIR, else the repository's runs/."""
    import os

    runs_dir = runs_dir or os.environ.get("VAE_OVERLAY_RUNS_DIR") or ROOT / "runs"
    defaults = DEFAULTS[number(notebook)]
    if values["FIGURES_DIR"] != defaults["FIGURES_DIR"]:
        return values["FIGURES_DIR"]
    changed = differing(
        {k: values[k] for k in defaults if k not in FOLDERS and k in values}, defaults
    )
    if not changed:
        return defaults["FIGURES_DIR"]
    folder = Path(runs_dir) / run_identity(changed, DEFAULTS["01"]["DATASET"])[0]
    print(
        f"{', '.join(f'{k} = {v!r}' for k, v in changed.items())} differ from the committed"
        f" defaults: this notebook writes its figures to {folder / 'figures'} and its numbers to"
        f" {folder / 'summary.json'}, never to results/ (the committed results)."
    )
    return str(folder / "figures")


def plan(
    changes: dict, runs_dir: str | Path = ROOT / "runs", notebook_dir: str | Path = NOTEBOOK_DIR
) -> Run:
    """The run for these parameter changes; unknown names are refused, naming the known ones."""
    series = notebooks(notebook_dir)
    defaults = {path: parameters(path) for path in series}
    known = set().union(*defaults.values()) - set(FOLDERS)
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown}: the notebooks' parameters are {sorted(known)}"
        )
    changes = {k: as_list(v) for k, v in changes.items()}
    differs = differing(changes, *defaults.values())
    if not differs:
        return Run("default", None, series, {})
    # 01's
    series_dataset = next(
        (d["DATASET"] for d in defaults.values() if "DATASET" in d), ELPV_DATASETS[0]
    )
    name, changes = run_identity(changes, series_dataset)
    dataset = str(changes.get("DATASET", series_dataset))
    folder = Path(runs_dir).resolve() / name
    chosen, skipped = [], {}
    for path in series:
        applies_to, why = APPLIES_ONLY_TO.get(number(path), (None, ""))
        if applies_to is None or dataset in applies_to:
            chosen.append(path)
        else:
            skipped[path.name] = why
    run_parameters = dict(
        changes,
        ARTIFACTS_DIR=str(folder / "artifacts"),
        FIGURES_DIR=str(folder / "figures"),
        RESULTS_DIR=str(folder),
    )
    return Run(name, folder, chosen, run_parameters, skipped)


def notebook_advice() -> tuple:
    """(exception type, what to do about it in the notebook series) for the errors that the lower
    layers raise with the facts alone: which notebook makes the missing file, what to set."""
    from vae_overlay import model, overlay

    same_folders = "with the same DATASET and ARTIFACTS_DIR"
    return (
        (data.DatasetMissing, f"run notebooks/01_prepare_dataset.ipynb first {same_folders}."),
        (data.ImagesUnusable, "re-create the dataset with notebooks/01_prepare_dataset.ipynb."),
        (model.ModelMissing, f"run notebooks/02_train_vae.ipynb first ({same_folders})."),
        (model.ModelUnusable, "re-run notebooks/02_train_vae.ipynb with RETRAIN = True."),
        (NonFiniteState, "re-run notebooks/02_train_vae.ipynb with RETRAIN = True."),
        (
            overlay.SourcesUnusable,
            (
                "set OVERLAY_IMAGES to a list of at least two existing image "
                "files (paths relative to notebooks/ or absolute)."
            ),
        ),
    )


@contextlib.contextmanager
def advised():
    """Around a notebook's calls into the package: an error of `notebook_advice` is raised again, of
    the same type, with what to do about it in the notebooks appended to its facts."""
    try:
        yield
    except Exception as error:
        advice = next((text for kind, text in notebook_advice() if isinstance(error, kind)), None)
        if advice is None:
            raise
        raise type(error)(f"{error} In the notebooks: {advice}") from error


def load_trained(
    artifacts_dir, dataset: str, image_size: int, latent_dim: int, max_sample: int = MAX_SAMPLE
):
    """(images, names, vae, run folder) for notebooks 03 and 04, checked to belong together.

    The images are notebook 01's dataset.npz, or for a streamed training (notebook 02 with
    STREAMING) an even sample of at most `max_sample` images of the stream. The images' hash must be
    the one notebook 02 trained on, and the model's size and latent dimension the ones asked for;
    otherwise RunMismatch names the notebook to re-run.
    """
    from vae_overlay import model, stream, train

    run = datasets.run_dir(artifacts_dir, dataset)
    model_path = run / train.MODEL_FILE
    if not model_path.is_file():
        raise FileNotFoundError(
            f"{model_path} not found: run 02_train_vae.ipynb first with DATASET = {dataset!r} "
            "(and the same ARTIFACTS_DIR)."
        )
    trained = train.read_history(run / train.HISTORY_FILE)["settings"]
    redo_02 = (
        f"re-run 02_train_vae.ipynb with RETRAIN = True (DATASET = {dataset!r}, IMAGE_SIZE ="
        f" {image_size})"
    )
    if (trained["image_size"], trained["latent_dim"]) != (image_size, latent_dim):
        raise RunMismatch(
            f"{model_path} was trained at image size {trained['image_size']} and latent dim "
            f"{trained['latent_dim']}, not {image_size} and {latent_dim}: use the parameters of "
            f"notebook 02, or {redo_02} and these parameters."
        )
    npz, cache = run / "dataset.npz", run / "image-cache"
    if npz.is_file():
        images, names = data.load_dataset(npz)
        if images.shape[1] != image_size:
            raise RunMismatch(
                f"{npz} holds {images.shape[1]} px images, not IMAGE_SIZE = {image_size}: re-run "
                f"01_prepare_dataset.ipynb with IMAGE_SIZE = {image_size}, then 02."
            )
        if fingerprint(images) == trained["images_sha256"]:
            with advised():
                vae = model.load_vae(model_path)
            return images, names, vae, run
    if cache.is_dir() and dataset not in datasets.BUILT_IN:
        source = stream.ImageStream(data.resolve_folder(dataset), image_size, cache, verbose=0)
        if source.sha256 == trained["images_sha256"]:
            index = np.unique(
                np.linspace(0, len(source) - 1, min(max_sample, len(source))).astype(int)
            )
            print(
                f"streamed training: analysing an even sample of {len(index):,} of {len(source):,}"
                " images"
            )
            with advised():
                vae = model.load_vae(model_path)
            return source.read(index), [source.names[i] for i in index], vae, run
    if not npz.is_file() and not cache.is_dir():
        raise FileNotFoundError(
            f"no dataset in {run}: run 01_prepare_dataset.ipynb first with DATASET = {dataset!r}."
        )
    raise RunMismatch(
        f"the images in {run} are not the ones {model_path} was trained on (their hash differs): "
        f"the dataset changed after notebook 02 ran; {redo_02}."
    )
