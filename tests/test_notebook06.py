"""Notebook 06 end to end through papermill with small parameters (its defaults take ~20 min).

Checks the structured results: summary.json, the saved cell lists and VAE folders, the figures.
"""
import csv
import json

import pytest

from vae_overlay import classifier_experiment as experiment

SMALL_06 = {"N_SEEDS": 2, "N_TRAIN_PER_CLASS": 20, "N_VAL_PER_CLASS": 10, "N_GENERATED_PER_CLASS": 20, "EPOCHS": 2,
            "CLASSIFIER_STEPS": 30, "CHECK_EVERY": 15, "SEED": 7}


def cell_names(path) -> set[str]:
    """Cell names of a split list written by vae_overlay.classifier.write_cell_list."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["name", "label", "role"]
        return {row["name"] for row in reader}


@pytest.mark.slow
def test_notebook06_small(tmp_path, run_notebook):
    _, results = run_notebook("06_augment_classifier.ipynb", tmp_path, **SMALL_06)
    summary = json.loads((results / "summary.json").read_text())["06_augment_classifier"]
    assert summary["seeds"] == [7, 8] and summary["test_cells"] == 450
    assert (summary["train_per_class"], summary["validation_per_class"], summary["generated_per_class"]) == (20, 10, 20)
    assert list(summary["conditions"]) == list(experiment.CONDITIONS)
    assert list(summary["paired_vs_original"]) == list(experiment.CONDITIONS)[1:]
    for metrics in summary["conditions"].values():
        assert set(metrics) == {"accuracy", "balanced_accuracy", "roc_auc"}
        for values in metrics.values():
            assert len(values["per_seed"]) == 2 and all(0 <= v <= 1 for v in values["per_seed"])
    for comparison in summary["paired_vs_original"].values():
        assert comparison["accuracy"]["n"] == 2
        assert comparison["accuracy"]["ci_low"] <= comparison["accuracy"]["mean_difference"] <= \
            comparison["accuracy"]["ci_high"]
    assert [(run["seed"], run["class"]) for run in summary["vae_restarts"]] == \
        [(7, "defective"), (7, "functional"), (8, "defective"), (8, "functional")]
    assert {check["set"] for check in summary["generated_image_checks"]} == {
        "real defective", "real functional", "defective samples", "functional samples", "defective overlays"}
    assert [timing["seed"] for timing in summary["timings"]] == [7, 8]

    # the saved lists: one fixed test set; per seed, training and validation cells disjoint from it
    experiment_dir = tmp_path / "artifacts" / "elpv-classifier-mono" / "test0.5-seed7-64px"
    test_cells = cell_names(experiment_dir / "test_cells.csv")
    assert len(test_cells) == 450
    for seed in (7, 8):
        seed_dir = experiment_dir / f"seed{seed}-train20-val10"
        train, val = cell_names(seed_dir / "train_cells.csv"), cell_names(seed_dir / "validation_cells.csv")
        vae_cells = cell_names(seed_dir / "vae-defective" / "vae_training_cells.csv")
        assert (len(train), len(val), len(vae_cells)) == (40, 20, 20)
        assert not (train | val) & test_cells and vae_cells <= train
        assert (seed_dir / "vae-functional" / "vae.keras").is_file()
    assert len((experiment_dir / "results_table.txt").read_text().splitlines()) == 2 + len(experiment.CONDITIONS)
    for name in ("fig6_classifier_conditions", "fig6_training_examples"):
        assert (results / "figures" / f"{name}.png").is_file()
