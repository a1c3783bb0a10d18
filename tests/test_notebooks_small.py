"""Notebooks too slow for nbval at their defaults, run end to end through papermill with small parameters.

Each test executes one notebook into a temporary folder (artifacts and figures there too) and checks
the key numbers it prints. Notebook 05's defaults train 12,800 steps (11.4 min on an idle 2-core machine).
"""
import json
import re
from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def run_notebook(name: str, tmp_path: Path, **parameters) -> list[str]:
    """Execute notebooks/<name> with `parameters` (ARTIFACTS_DIR/FIGURES_DIR under tmp_path unless given);
    return the text of every stream output of its code cells, in order."""
    out = tmp_path / f"out_{name}"
    parameters = {"ARTIFACTS_DIR": str(tmp_path / "artifacts"), "FIGURES_DIR": str(tmp_path / "results" / "figures"),
                  **parameters}
    papermill.execute_notebook(str(NOTEBOOKS / name), str(out), cwd=str(NOTEBOOKS), progress_bar=False,
                               parameters=parameters)
    cells = json.loads(out.read_text())["cells"]
    texts = [o.get("text", "") for c in cells if c["cell_type"] == "code" for o in c["outputs"]]
    return ["".join(t) if isinstance(t, list) else t for t in texts]


def table_rows(outputs: list[str], header_start: str) -> list[list[str]]:
    """The body of the printed plain-text table whose header line starts with `header_start`, as lists of
    cells: the lines after its dashed rule, up to a blank line or the end of that cell output."""
    for text in outputs:
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith(header_start) and i + 1 < len(lines) and set(lines[i + 1]) <= {"-", " "}:
                body = []
                for row in lines[i + 2:]:
                    if not row.strip():
                        break
                    body.append(re.split(r"\s{2,}", row.strip()))
                return body
    raise AssertionError(f"no printed table with a header starting {header_start!r}")


SMALL_05 = {"IMAGE_SIZE": 32, "COPIES": 8, "EPOCHS": 2, "SWEEP_COPIES": 4, "DIM_COPIES": 4,
            "SWEEP_VARIANTS": ["paper", "standardised + leaky"], "SWEEP_SEEDS": [42], "LATENT_DIMS": [2, 4],
            "N_LATENT_SAMPLES": 50, "WEIGHTS": [0.5, 2.0]}


@pytest.mark.slow
def test_notebook05_small(tmp_path):
    outputs = run_notebook("05_overlay_defects.ipynb", tmp_path, **SMALL_05)
    text = "\n".join(outputs)
    assert "sources: ['crack_1', 'crack_2', 'pore'] (3, 32, 32, 1) float32" in text
    assert "training images: 24 = 8 copies x 3 sources; 3 batches per epoch, 6 steps in 2 epochs" in text
    assert "every batch holds every source: True" in text and "every copy used once in the epoch: True" in text
    # the cluster check is printed for the paper's model and the fixed variant, with a count out of 3
    assert text.count("clusters: ") >= 2 and "for 3 sources (" in text
    assert "dead encoder units (output <= 0 for every source): " in text

    sweep = table_rows(outputs, "variant ")
    assert [row[0] for row in sweep] == ["paper, 8 copies (6 steps)", "paper (4 steps)", "standardised + leaky (4 steps)"]
    assert all(re.fullmatch(r"[01]/1", row[1]) for row in sweep)  # collapsed runs out of the seeds

    header = next(line for line in text.splitlines() if line.startswith("method "))
    columns = re.split(r"\s{2,}", header.strip())
    assert columns == ["method", "crack_1+crack_2", "crack_1+pore", "crack_2+pore", "all", "mean",
                       "rec crack_1", "rec crack_2", "rec pore", "spurious", "counts"]
    fidelity = {row[0]: row for row in table_rows(outputs, "method ")}
    assert list(fidelity)[:3] == ["pixel mean (baseline)", "pixel compositing (darkest)", "paper: latent sum"]
    assert "fixed: decoded compositing" in fidelity and len(fidelity) == 10
    for row in fidelity.values():
        assert len(row) == len(columns) and all(0.0 <= float(v) <= 1.0 for v in row[1:-1])
        assert row[-1] in ("-", "yes", "no")
    # pixel compositing shows every defect: on the overlay of all three it must beat the pixel mean
    assert float(fidelity["pixel compositing (darkest)"][4]) > float(fidelity["pixel mean (baseline)"][4])

    dims = table_rows(outputs, "latent dim ")
    assert [row[0] for row in dims] == ["2", "4"] and all(re.fullmatch(r"[123]/3", row[1]) for row in dims)
    assert "same seed, same overlays: True" in text
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())["05_overlay_defects"]
    assert set(summary["latent_dimension"]) == {"2", "4"} and summary["copies"] == 8
    for name in ("fig4_overlay_sources", "fig5_overlays_paper_recipe", "fig5b_overlay_methods"):
        assert (tmp_path / "results" / "figures" / f"{name}.png").is_file()


@pytest.mark.slow
def test_notebook05_small_on_two_images_without_masks(tmp_path):
    folder = tmp_path / "my defects"
    folder.mkdir()
    for name in ("crack_1", "pore"):  # the images only, not their masks
        (folder / f"{name}.png").write_bytes((ROOT / "data" / "synthetic" / f"{name}.png").read_bytes())
    outputs = run_notebook("05_overlay_defects.ipynb", tmp_path, **{
        **SMALL_05, "OVERLAY_IMAGES": [str(folder / "crack_1.png"), str(folder / "pore.png")], "DATASET": "mine",
        "SWEEP_VARIANTS": ["paper"], "LATENT_DIMS": [2]})
    text = "\n".join(outputs)
    assert "sources: ['crack_1', 'pore'] (2, 32, 32, 1) float32" in text
    assert "masks: none (fidelity cannot be measured)" in text
    assert "training images: 16 = 8 copies x 2 sources" in text and "every batch holds every source: True" in text
    assert "for 2 sources (" in text and "no masks: no fidelity table" in text
    assert [row[0] for row in table_rows(outputs, "variant ")] == ["paper, 8 copies (4 steps)", "paper (2 steps)"]
    assert [row[0] for row in table_rows(outputs, "latent dim ")] == ["2"]
    assert (tmp_path / "artifacts" / "mine").is_dir()


SMALL_06 = {"N_SEEDS": 2, "N_TRAIN_PER_CLASS": 20, "N_VAL_PER_CLASS": 10, "N_GENERATED_PER_CLASS": 20, "EPOCHS": 2,
            "CLASSIFIER_STEPS": 30, "CHECK_EVERY": 15, "SEED": 7}


def cell_names(path: Path) -> set[str]:
    """Cell names of a split list written by vae_overlay.classifier.write_cell_list."""
    lines = path.read_text().splitlines()
    assert lines[0] == "name,label,role"
    return {line.split(",")[0] for line in lines[1:]}


@pytest.mark.slow
def test_notebook06_small(tmp_path):
    outputs = run_notebook("06_augment_classifier.ipynb", tmp_path, **SMALL_06)
    text = "\n".join(outputs)
    assert "runs: 10 = 5 conditions x 2 seeds" in text
    assert "every condition ran every seed: True" in text
    assert "leakage guard passed for every seed: True" in text
    assert "table: 5 conditions x 3 metrics, each over 2 seeds" in text
    assert "all metrics within [0, 1]: True" in text
    rows = table_rows(outputs, "condition ")
    assert [row[0] for row in rows] == ["(1) original", "(2) classical augmentation", "(3) + VAE samples",
                                        "(4) + VAE overlays", "(5) classical + overlays"]
    assert [row[1] for row in rows] == ["40", "40", "80", "80", "80"]  # real cells, + 20 generated per class

    # the saved lists: one fixed test set; per seed, training and validation cells disjoint from it
    experiment = tmp_path / "artifacts" / "elpv-classifier-mono" / "test0.5-seed7-64px"
    test_cells = cell_names(experiment / "test_cells.csv")
    assert len(test_cells) == 450
    for seed in (7, 8):
        seed_dir = experiment / f"seed{seed}-train20-val10"
        train, val = cell_names(seed_dir / "train_cells.csv"), cell_names(seed_dir / "validation_cells.csv")
        vae_cells = cell_names(seed_dir / "vae-defective" / "vae_training_cells.csv")
        assert (len(train), len(val), len(vae_cells)) == (40, 20, 20)
        assert not (train | val) & test_cells and vae_cells <= train
        assert (seed_dir / "vae-functional" / "vae.keras").is_file()

    summary = json.loads((tmp_path / "results" / "summary.json").read_text())["06_augment_classifier"]
    assert len(summary["conditions"]) == 5 and len(summary["paired_vs_original"]) == 4
    for metrics in summary["conditions"].values():
        assert all(len(metrics[m]["per_seed"]) == 2 for m in ("accuracy", "balanced_accuracy", "roc_auc"))
    for name in ("fig6_classifier_conditions", "fig6_training_examples"):
        assert (tmp_path / "results" / "figures" / f"{name}.png").is_file()


def test_notebook02_streams_a_folder_without_notebook01(tmp_path):
    """STREAMING = True: notebook 02 reads a folder itself, through the disk cache, and trains on it."""
    import numpy as np
    from PIL import Image

    from vae_overlay import synth

    folder = tmp_path / "my images"
    folder.mkdir()
    images, _, _ = synth.make_dataset(24, size=80, seed=5, kinds=("crack",), crack_fraction=1.0)
    for i, image in enumerate(images):
        Image.fromarray((image[..., 0] * 255).astype(np.uint8)).save(folder / f"crack_{i:02d}.png")
    (folder / "notes.txt").write_text("not an image")
    outputs = run_notebook("02_train_vae.ipynb", tmp_path, DATASET=str(folder), STREAMING=True, IMAGE_SIZE=32,
                           EPOCHS=2)
    text = "\n".join(outputs)
    assert "images: (24, 32, 32, 1) float32 | values in [0, 1]: True" in text
    assert "epochs in history: 2" in text and "total == reconstruction + KL in every epoch: True" in text
    assert "latent means: (24, 2) | all finite: True" in text
    run = tmp_path / "artifacts" / "my_images"
    assert (run / "vae.keras").is_file() and len(list((run / "image-cache").glob("images-*.f32"))) == 1
    assert not (run / "dataset.npz").exists()  # notebook 01 was not needed
