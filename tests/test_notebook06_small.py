"""Notebook 06 (classifier on original vs VAE-extended training sets) end to end, with small parameters.

Its defaults take 10-20 min on 2 CPU cores, so nbval does not run it; this runs every condition on
2 seeds with 20 + 20 training cells, VAEs of 2 epochs and 30 classifier steps, and checks the table,
the saved split lists and the recorded summary.
"""
import csv
import json
from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "06_augment_classifier.ipynb"
SMALL = {"N_SEEDS": 2, "N_TRAIN_PER_CLASS": 20, "N_VAL_PER_CLASS": 10, "N_GENERATED_PER_CLASS": 20, "EPOCHS": 2,
         "CLASSIFIER_STEPS": 30, "CHECK_EVERY": 15, "SEED": 7}


def outputs_text(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    texts = [o.get("text", "") for c in cells if c["cell_type"] == "code" for o in c["outputs"]]
    return "".join("".join(t) if isinstance(t, list) else t for t in texts)


def names_in(path: Path) -> set[str]:
    with open(path, newline="") as handle:
        return {row["name"] for row in csv.DictReader(handle)}


@pytest.mark.slow
def test_notebook06_small(tmp_path):
    out = tmp_path / "06_out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(out), cwd=str(NOTEBOOK.parent), progress_bar=False,
        parameters={**SMALL, "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
                    "FIGURES_DIR": str(tmp_path / "results" / "figures")})
    text = outputs_text(out)
    assert "runs: 10 = 5 conditions x 2 seeds" in text
    assert "every condition ran every seed: True" in text
    assert "leakage guard passed for every seed: True" in text
    assert "table: 5 conditions x 3 metrics, each over 2 seeds" in text
    assert "all metrics within [0, 1]: True" in text

    # the saved lists: a fixed test set, and per seed training and validation cells disjoint from it
    experiment = tmp_path / "artifacts" / "elpv-classifier-mono" / "test0.5-seed7-64px"
    test_cells = names_in(experiment / "test_cells.csv")
    assert len(test_cells) == 450
    for seed in (7, 8):
        seed_dir = experiment / f"seed{seed}-train20-val10"
        train, val = names_in(seed_dir / "train_cells.csv"), names_in(seed_dir / "validation_cells.csv")
        vae_cells = names_in(seed_dir / "vae-defective" / "vae_training_cells.csv")
        assert (len(train), len(val), len(vae_cells)) == (40, 20, 20)
        assert not (train | val) & test_cells and vae_cells <= train
        assert (seed_dir / "vae-functional" / "vae.keras").is_file()

    summary = json.loads((tmp_path / "results" / "summary.json").read_text())["06_augment_classifier"]
    assert len(summary["conditions"]) == 5 and len(summary["paired_vs_original"]) == 4
    for metrics in summary["conditions"].values():
        assert all(len(metrics[m]["per_seed"]) == 2 for m in ("accuracy", "balanced_accuracy", "roc_auc"))
    for name in ("fig6_classifier_conditions", "fig6_training_examples"):
        assert (tmp_path / "results" / "figures" / f"{name}.png").is_file()
