"""Notebook 06 end to end through papermill with small parameters, its study section included: it
runs the tiny classifier study (2 runs) on a LocalCluster of one worker, reads the table and records
the paired summary.

Checks the structured results: summary.json, the saved cell lists and VAE folders, the study table,
the figures.
"""

import csv
import json

import pytest

from vae_overlay import classifier_experiment as experiment

SMALL_06 = {
    "N_SEEDS": 2,
    "N_TRAIN_PER_CLASS": 20,
    "N_VAL_PER_CLASS": 10,
    "N_GENERATED_PER_CLASS": 20,
    "EPOCHS": 2,
    "CLASSIFIER_STEPS": 30,
    "CHECK_EVERY": 15,
    "SEED": 7,
    "STUDY": "tiny-classifier",
    "RUN_STUDY": True,
    "WORKERS": 1,
}


def cell_names(path) -> set[str]:
    """Cell names of a split list written by vae_overlay.classifier.write_cell_list."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["name", "label", "role"]
        return {row["name"] for row in reader}


@pytest.mark.slow
def test_notebook06_small(tmp_path, run_notebook, notebook_text):
    executed, results = run_notebook(
        "06_augment_classifier.ipynb",
        tmp_path,
        STUDY_RESULTS_DIR=str(tmp_path / "results"),
        **SMALL_06,
    )
    summary = json.loads((results / "summary.json").read_text())["06_augment_classifier"]
    assert summary["seeds"] == [7, 8] and summary["test_cells"] == 450
    assert (
        summary["train_per_class"],
        summary["validation_per_class"],
        summary["generated_per_class"],
    ) == (20, 10, 20)
    assert list(summary["conditions"]) == list(experiment.CONDITIONS)
    assert list(summary["paired_vs_original"]) == list(experiment.CONDITIONS)[1:]
    for metrics in summary["conditions"].values():
        assert set(metrics) == {"accuracy", "balanced_accuracy", "roc_auc"}
        for values in metrics.values():
            assert len(values["per_seed"]) == 2 and all(0 <= v <= 1 for v in values["per_seed"])
    for comparison in summary["paired_vs_original"].values():
        assert comparison["accuracy"]["n"] == 2
        assert (
            comparison["accuracy"]["ci_low"]
            <= comparison["accuracy"]["mean_difference"]
            <= comparison["accuracy"]["ci_high"]
        )
    assert [(run["seed"], run["class"]) for run in summary["vae_restarts"]] == [
        (7, "defective"),
        (7, "functional"),
        (8, "defective"),
        (8, "functional"),
    ]
    assert {check["set"] for check in summary["generated_image_checks"]} == {
        "real defective",
        "real functional",
        "defective samples",
        "functional samples",
        "defective overlays",
    }
    assert [timing["seed"] for timing in summary["timings"]] == [7, 8]

    # the saved lists: one fixed test set; per seed, training and validation cells disjoint from it
    experiment_dir = tmp_path / "artifacts" / "elpv-classifier-mono" / "test0.5-seed7-64px"
    test_cells = cell_names(experiment_dir / "test_cells.csv")
    assert len(test_cells) == 450
    for seed in (7, 8):
        seed_dir = experiment_dir / f"seed{seed}-train20-val10"
        train, val = (
            cell_names(seed_dir / "train_cells.csv"),
            cell_names(seed_dir / "validation_cells.csv"),
        )
        vae_cells = cell_names(seed_dir / "vae-defective" / "vae_training_cells.csv")
        assert (len(train), len(val), len(vae_cells)) == (40, 20, 20)
        assert not (train | val) & test_cells and vae_cells <= train
        assert (seed_dir / "vae-functional" / "vae.keras").is_file()
    assert len((experiment_dir / "results_table.csv").read_text().splitlines()) == 1 + len(
        experiment.CONDITIONS
    )
    for name in (
        "fig6_classifier_conditions",
        "fig6_training_examples",
        "fig6_study_curve",
        "fig6_study_forest",
    ):
        assert (results / "figures" / f"{name}.png").is_file()

    # the study section: the tiny study ran (2 runs), its table was read and summarized, paired with
    # "(1) original"
    assert "tiny-classifier.csv: 2 of 2 runs finished, 0 failed" in notebook_text(executed)
    assert len((results / "studies" / "tiny-classifier.csv").read_text().splitlines()) == 1 + 2
    recorded = summary["study"]
    assert (recorded["name"], recorded["table"]) == ("tiny-classifier", "tiny-classifier.csv")
    assert (
        recorded["runs_finished"] == recorded["runs_planned"] == 2 and recorded["runs_failed"] == 0
    )
    assert (
        recorded["primary_metric"] == "balanced_accuracy" and recorded["equivalence_margin"] == 0.02
    )
    extensions = list(experiment.STUDY_CONDITIONS)[1:]
    for metric in ("balanced_accuracy", "roc_auc"):
        entries = recorded["paired_vs_original"][metric]
        assert [(e["n_train"], e["condition"]) for e in entries] == [
            (6, condition) for condition in extensions
        ]
        for e in entries:
            assert e["runs"] + e["dropped"] == 2 and e["verdict"]
            if e["runs"] == 2:
                assert (
                    e["ci_low"] <= e["mean"] <= e["ci_high"]
                    and 0 <= e["tost_p"] <= 1
                    and e["mde"] >= 0
                )
            else:  # a run whose VAE collapsed in every attempt leaves its VAE conditions out
                assert (
                    e["condition"]
                    in (
                        "(3) + VAE samples",
                        "(4) + VAE overlays",
                        "(5) classical + overlays",
                        "(6) + VAE composites",
                    )
                    and e["verdict"] == "too few runs"
                )
        by_condition = {e["condition"]: e for e in entries}
        assert (
            by_condition["(2) classical augmentation"]["runs"]
            == by_condition["(7) + copy-paste cracks"]["runs"]
            == 2
        )
        means = recorded["condition_means"][metric]
        assert [m["condition"] for m in means] == list(experiment.STUDY_CONDITIONS)
        for m in means:
            assert m["runs"] == 0 or 0 <= m["mean"] <= 1
            assert m["runs"] < 2 or m["ci_low"] <= m["mean"] <= m["ci_high"]
    # the tables are tables: this run's per-condition frame and the study's (balanced accuracy
    # beside ROC AUC)
    tables = [
        o["data"]["text/html"]
        for cell in executed["cells"]
        for o in cell.get("outputs", [])
        if "text/html" in o.get("data", {})
    ]
    tables = ["".join(t) if isinstance(t, list) else t for t in tables]
    assert any("accuracy better in" in t for t in tables)
    assert any(
        "balanced accuracy, pp" in t and "ROC AUC, pp" in t and "90 % (TOST)" in t for t in tables
    )
