"""A user's run on their own images: `make reproduce DATASET=<folder>` (vae_overlay.reproduce,
vae_overlay.config) end to end.

The run writes only under its own folder (runs/<name>/), never the committed notebooks or results/;
its notebooks 03 refuses a model trained on other images, naming the notebook to re-run.
"""

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import papermill
import pytest
import yaml
from PIL import Image

from vae_overlay import config, data, datasets, reproduce, runs, stream, synth, train
from vae_overlay.model import ModelMissing, ModelUnusable, load_vae
from vae_overlay.overlay import SourcesUnusable, load_sources

ROOT = Path(__file__).resolve().parents[1]
# Small enough for the test suite: 32 px, 2 epochs, no full sweep, notebook 05's two models on 8
# copies for 2 epochs.
SMALL = {
    "IMAGE_SIZE": 32,
    "EPOCHS": 2,
    "FULL_SWEEP": False,
    "COPIES": 8,
    "OVERLAY_EPOCHS": 2,
    "N_LATENT_SAMPLES": 50,
    "WEIGHTS": [0.5],
    "PATH_STEPS": 5,
}


def tree_digest(*folders: Path) -> dict:
    """relative path -> sha256 of every file under the folders."""
    return {
        str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def image_folder(folder: Path, count: int = 12, seed: int = 1) -> Path:
    folder.mkdir(parents=True)
    images, _, _ = synth.make_dataset(
        count, size=48, seed=seed, kinds=("crack",), crack_fraction=1.0
    )
    for i, image in enumerate(images):
        Image.fromarray(np.round(image[..., 0] * 255).astype(np.uint8)).save(
            folder / f"part_{i:02d}.png"
        )
    return folder


def test_plan_names_runs_apart_and_refuses_unknown_parameters(tmp_path):
    # the series' default image set is the ELPV crack patches (notebook 01's DATASET); the whole
    # cells are a run
    assert (
        config.plan({}).is_default
        and config.plan({"DATASET": "elpv-crack-patches", "IMAGE_SIZE": 64}).is_default
    )
    cells = config.plan({"DATASET": "elpv-cracks"}, tmp_path / "runs")
    assert not cells.is_default and cells.name.startswith("elpv-cracks-")
    # 06: the ELPV cells apply
    assert [p.name[:2] for p in cells.notebooks] == ["01", "02", "03", "04", "05", "06"]
    first = config.plan({"DATASET": str(image_folder(tmp_path / "a" / "mine"))}, tmp_path / "runs")
    second = config.plan({"DATASET": str(image_folder(tmp_path / "b" / "mine"))}, tmp_path / "runs")
    assert (
        first.name.startswith("mine-")
        and second.name.startswith("mine-")
        and first.name != second.name
    )
    assert [p.name[:2] for p in first.notebooks] == ["01", "02", "03", "04", "05"]
    assert set(first.skipped) == {
        "05b_overlay_studies.ipynb",
        "06_augment_classifier.ipynb",
        "07_section3_study.ipynb",
    }
    assert first.parameters["FIGURES_DIR"] == str(
        tmp_path.resolve() / "runs" / first.name / "figures"
    )
    (tmp_path / "a" / "mine" / "extra.png").write_bytes(
        (tmp_path / "b" / "mine" / "part_00.png").read_bytes()
    )
    edited = config.plan({"DATASET": str(tmp_path / "a" / "mine")}, tmp_path / "runs")
    assert edited.name != first.name  # an edited folder is a new run: the old one is kept
    same_size = config.plan({"IMAGE_SIZE": 128}, tmp_path / "runs")
    # 06 applies, 07 not
    assert same_size.name.startswith("elpv-crack-patches-") and len(same_size.notebooks) == 6
    synthetic = config.plan({"DATASET": "synthetic"}, tmp_path / "runs")
    assert set(synthetic.skipped) == {
        "05b_overlay_studies.ipynb",
        "06_augment_classifier.ipynb",
        "07_section3_study.ipynb",
    }
    with pytest.raises(ValueError, match="unknown parameter.*IMAGE_SIZ\\b.*IMAGE_SIZE"):
        config.plan({"IMAGE_SIZ": 32})
    with pytest.raises(FileNotFoundError, match="no such folder"):
        config.plan({"DATASET": str(tmp_path / "missing")})
    assert config.parse_assignments(
        ["LEARNING_RATE=2e-3", "DATASET=data/x y", "WEIGHTS=[1, 2]", "RETRAIN=True"]
    ) == {"LEARNING_RATE": 0.002, "DATASET": "data/x y", "WEIGHTS": [1, 2], "RETRAIN": True}


@pytest.mark.slow
def test_custom_folder_run_writes_only_its_run_folder_and_refuses_a_mismatch(
    tmp_path, monkeypatch, capfd
):
    committed = tree_digest(ROOT / "notebooks", ROOT / "results", ROOT / "data")
    folder = image_folder(tmp_path / "my parts")
    capfd.readouterr()
    run = reproduce.reproduce(
        {"DATASET": str(folder), **SMALL}, runs_dir=tmp_path / "runs", progress=False
    )
    assert tree_digest(ROOT / "notebooks", ROOT / "results", ROOT / "data") == committed
    out, err = capfd.readouterr()  # what the terminal shows, the kernels' own output included
    assert "images: 12 usable" in out and "estimated time on this machine" in out
    for number in ("01", "02", "03", "04", "05"):
        assert re.search(rf"^{number}_\w+\.ipynb \.\.\. \d+\.\d min, ok$", out, re.MULTILINE), out
    assert f"wrote: notebooks in {run.folder / 'notebooks'}" in out
    # TensorFlow's C++ log lines carry their process id: this test's own process started TensorFlow
    # before the run set the log level (`make reproduce` sets it before), so only its lines may
    # show; papermill's never
    noise = [
        line
        for line in (out + err).splitlines()
        if f" {os.getpid()} " not in line
        and any(
            word in line
            for word in ("Unable to parse line", "cpu_feature_guard", "oneDNN", "cudart_stub")
        )
    ]
    assert noise == []

    assert run.folder == tmp_path.resolve() / "runs" / run.name and run.name.startswith("my_parts-")
    executed = sorted(p.name for p in (run.folder / "notebooks").glob("*.ipynb"))
    assert [name[:2] for name in executed] == ["01", "02", "03", "04", "05"]
    summary = json.loads((run.folder / "summary.json").read_text())
    assert summary["01_prepare_dataset"]["images"] == 12 and summary["02_train_vae"]["epochs"] == 2
    assert (
        "the 3 most different images of <tmp>/"
        in (run.folder / "notebooks" / executed[4]).read_text()
    )
    assert (run.folder / "REPORT.md").is_file() and len(
        list((run.folder / "figures").glob("*.png"))
    ) >= 8
    own_report = (
        run.folder / "REPORT.md"
    ).read_text()  # about this run: no committed verdicts, no hash suffixes
    assert "## Verdicts" not in own_report and "## This run (one draw)" in own_report
    assert "12 images of my_parts at 32 px" in own_report
    assert yaml.safe_load((run.folder / "run.yaml").read_text())["IMAGE_SIZE"] == 32
    for path in (run.folder / "notebooks").glob("*.ipynb"):
        assert str(ROOT) + "/.venv" not in path.read_text()

    # Notebook 01 re-run on other images, notebook 02 not: notebook 03 must refuse the pair and say
    # what to run.
    artifacts = datasets.run_dir(run.parameters["ARTIFACTS_DIR"], str(folder))
    images, names = data.load_dataset(artifacts / "dataset.npz")
    data.save_dataset(artifacts / "dataset.npz", data.LoadedImages(images[:, ::-1].copy(), names))
    with pytest.raises(
        papermill.PapermillExecutionError, match="02_train_vae.ipynb with RETRAIN = True"
    ):
        papermill.execute_notebook(
            str(ROOT / "notebooks" / "03_latent_distribution.ipynb"),
            str(tmp_path / "03.ipynb"),
            parameters=run.parameters,
            cwd=str(ROOT / "notebooks"),
            progress_bar=False,
        )
    # the same run started again: 01 rewrites the images, 02 reloads its model, and the whole run
    # goes through
    again = reproduce.reproduce(
        {"DATASET": str(folder), **SMALL}, runs_dir=tmp_path / "runs", progress=False
    )
    assert (
        again.folder == run.folder
        and "Loaded the finished model" in (run.folder / "notebooks" / executed[1]).read_text()
    )
    # a failing notebook names itself and where its outputs are
    empty = tmp_path / "no images"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    # refused before any notebook
    with pytest.raises(data.DatasetError, match=r"No usable image in .*no images"):
        reproduce.reproduce({"DATASET": str(empty)}, runs_dir=tmp_path / "runs", progress=False)
    # as if the folder emptied later
    monkeypatch.setattr(reproduce, "preflight", lambda run, step_seconds=None: "")
    with pytest.raises(
        RuntimeError, match=r"01_prepare_dataset.ipynb stopped with DatasetError: .*no images"
    ):
        reproduce.reproduce({"DATASET": str(empty)}, runs_dir=tmp_path / "runs", progress=False)
    assert tree_digest(ROOT / "notebooks", ROOT / "results", ROOT / "data") == committed


def test_notebooks_03_and_04_open_a_streamed_training_through_an_even_sample(tmp_path):
    folder = image_folder(tmp_path / "streamed", count=10)
    run = datasets.run_dir(tmp_path / "artifacts", str(folder))
    source = stream.ImageStream(folder, 32, run / "image-cache", verbose=0)
    train.train_vae(source, run, epochs=1, batch_size=5, verbose=0)
    images, names, vae, found = config.load_trained(
        tmp_path / "artifacts", str(folder), 32, 2, max_sample=4
    )
    assert images.shape == (4, 32, 32, 1) and names == [
        "part_00.png",
        "part_03.png",
        "part_06.png",
        "part_09.png",
    ]
    assert found == run and vae.latent_dim == 2
    with pytest.raises(runs.RunMismatch, match="trained at image size 32 .*02_train_vae.ipynb"):
        config.load_trained(tmp_path / "artifacts", str(folder), 64, 2)
    with pytest.raises(FileNotFoundError, match="run 02_train_vae.ipynb first"):
        config.load_trained(tmp_path / "other", str(folder), 32, 2)


def test_the_notebooks_add_to_a_lower_layers_facts_which_notebook_to_run(tmp_path):
    """data, model and overlay say what is wrong; `config.advised` adds what to do about it."""
    with pytest.raises(data.DatasetMissing, match=r"dataset\.npz not found.*01_prepare_dataset"):
        with config.advised():
            data.load_dataset(tmp_path / "dataset.npz")
    (tmp_path / "vae.keras").write_bytes(b"not a model")
    with pytest.raises(ModelUnusable, match=r"vae\.keras could not .*02_train_vae.*RETRAIN"):
        with config.advised():
            load_vae(tmp_path / "vae.keras")
    with pytest.raises(SourcesUnusable, match=r"at least two source .*OVERLAY_IMAGES"):
        with config.advised():
            load_sources([tmp_path / "vae.keras"], 16)
    (tmp_path / "vae.keras").unlink()
    with pytest.raises(ModelMissing, match=r"vae\.keras not found.*run notebooks/02_train_vae"):
        with config.advised():
            load_vae(tmp_path / "vae.keras")
    with pytest.raises(KeyError, match="^'other'$"):  # any other error passes unchanged
        with config.advised():
            raise KeyError("other")


def test_notebook_parameters_match_the_committed_defaults_that_in_place_runs_compare_with():
    for path in config.notebooks():
        assert config.parameters(path) == config.DEFAULTS[config.number(path)], path.name


def test_output_folder_keeps_results_for_the_defaults_and_names_the_run_otherwise(tmp_path, capsys):
    defaults = dict(config.DEFAULTS["02"])
    assert config.output_folder("02_train_vae", defaults, tmp_path) == "../results/figures"
    assert capsys.readouterr().out == ""
    changed = config.output_folder(
        "02_train_vae", {**defaults, "EPOCHS": 5, "RETRAIN": False}, tmp_path
    )
    expected = config.plan({"EPOCHS": 5}, tmp_path)  # the run make reproduce EPOCHS=5 would make
    assert changed == str(expected.folder / "figures")
    assert "EPOCHS = 5 differ from the committed defaults" in capsys.readouterr().out
    # make reproduce set its own folder
    given = {**defaults, "EPOCHS": 5, "FIGURES_DIR": "/somewhere/figures"}
    assert config.output_folder("02", given, tmp_path) == "/somewhere/figures"


@pytest.mark.slow
def test_notebooks_01_to_04_run_in_place_on_other_images_leave_results_untouched(
    tmp_path, monkeypatch
):
    """As a user in JupyterLab: the committed notebooks, executed where they are with another
    DATASET (and nothing else about their folders changed), write their figures and summary under
    runs/, not results/."""
    import subprocess

    def status():
        return subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--ignored=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout

    folder = image_folder(tmp_path / "my_cracks")
    monkeypatch.setenv("VAE_OVERLAY_RUNS_DIR", str(tmp_path / "runs"))
    before, committed = status(), tree_digest(ROOT / "results", ROOT / "notebooks")
    common = {
        "DATASET": str(folder),
        "IMAGE_SIZE": 32,
        "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    own = {"02": {"EPOCHS": 2}, "04": {"FULL_SWEEP": False, "PATH_STEPS": 5}}
    for path in config.notebooks()[:4]:
        parameters = {**common, **own.get(path.name[:2], {})}
        papermill.execute_notebook(
            str(path),
            str(tmp_path / path.name),
            cwd=str(ROOT / "notebooks"),
            parameters={k: v for k, v in parameters.items() if k in config.parameters(path)},
            progress_bar=False,
            kernel_name="python3",
        )
        printed = json.dumps(json.loads((tmp_path / path.name).read_text())["cells"])
        assert "differ from the committed defaults" in printed and "never to results/" in printed, (
            path.name
        )
    assert tree_digest(ROOT / "results", ROOT / "notebooks") == committed and status() == before
    written = {
        p.relative_to(tmp_path / "runs").parts[1]
        for p in (tmp_path / "runs").rglob("*")
        if p.is_file()
    }
    assert written == {"figures", "summary.json"}
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/summary.json")]
    assert {name for summary in summaries for name in summary} >= {
        "01_prepare_dataset",
        "02_train_vae",
        "03_latent_distribution",
        "04_sample_latent_space",
    }


def test_preflight_says_images_notebooks_and_time_before_training_and_refuses_too_few(tmp_path):
    folder = image_folder(tmp_path / "mine", count=12)
    (folder / "broken.png").write_bytes(b"not a png")
    run = config.plan({"DATASET": str(folder), "FULL_SWEEP": False}, tmp_path / "runs")
    text = reproduce.preflight(run, step_seconds=0.05)
    assert f"images: 12 usable in {folder}, 1 skipped" in text and "skipped broken.png" in text
    # 05: 2 x 150 x 20 steps
    assert "notebooks: 01 (~15 s), 02 (~25 s), 03 (~15 s), 04 (~15 s), 05 (~5 min)" in text
    assert (
        "skipped 06_augment_classifier.ipynb" in text
        and "one training step here takes 50 ms" in text
    )
    few = image_folder(tmp_path / "few", count=4)
    with pytest.raises(
        data.DatasetError, match=rf"{few} has 4 usable image\(s\); a run needs at least 10"
    ):
        reproduce.preflight(
            config.plan({"DATASET": str(few)}, tmp_path / "runs"), step_seconds=0.05
        )
    assert 0 < reproduce.seconds_per_step(16, repeats=2) < 5
