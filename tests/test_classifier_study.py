"""classifier_study.py and the study's extra conditions: copy-paste cracks, decoded composites,
dropped VAEs."""

import json

import numpy as np
import pytest

from vae_overlay import classifier, classifier_study, study


def test_copy_paste_cracks_darken_only_along_the_source_crack(crack_images):
    cracks = crack_images(count=4, size=32, seed=1)
    plain = np.full((3, 32, 32, 1), 0.8, np.float32)
    pasted = classifier.copy_paste_cracks(cracks, plain, 5, seed=0)
    assert pasted.shape == (5, 32, 32, 1) and (pasted <= plain[0] + 1e-7).all()
    changed = (pasted < 0.79).mean(axis=(1, 2, 3))
    assert ((0.005 < changed) & (changed < 0.2)).all()  # a thin line, not the whole cell
    assert np.array_equal(pasted, classifier.copy_paste_cracks(cracks, plain, 5, seed=0))


def test_summarize_pairs_each_condition_with_the_original_and_tests_equivalence():
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(20):
        base = 0.7 + rng.normal(0, 0.03)
        row = {"seed": seed, "n_train": 80, "error": "", "balanced_accuracy|(1) original": base}
        for k, condition in enumerate(list(classifier_study.experiment.STUDY_CONDITIONS)[1:]):
            shift = 0.10 if k == 0 else 0.0
            row[f"balanced_accuracy|{condition}"] = base + shift + rng.normal(0, 0.005)
        row["balanced_accuracy|(3) + VAE samples"] = (
            float("nan") if seed < 3 else row["balanced_accuracy|(3) + VAE samples"]
        )
        rows.append(row)
    summary = {entry["condition"]: entry for entry in classifier_study.summarize(rows)}
    assert len(summary) == 6
    gain = summary["(2) classical augmentation"]
    assert gain["ci_low"] > 0.09 and gain["tost_p"] > 0.5 and gain["improved"] == 20
    same = summary["(7) + copy-paste cracks"]
    assert same["ci_low"] < 0 < same["ci_high"] and same["tost_p"] < 0.001 and same["mde"] < 0.01
    assert (
        summary["(3) + VAE samples"]["runs"] == 17 and summary["(3) + VAE samples"]["dropped"] == 3
    )


def entry(mean, low, high, tost_p, margin=0.02):
    return {
        "n_train": 80,
        "condition": "(2) classical augmentation",
        "runs": 20,
        "dropped": 0,
        "margin": margin,
        "mean": mean,
        "ci_low": low,
        "ci_high": high,
        "p": 0.5,
        "improved": 10,
        "mde": 0.01,
        "tost_p": tost_p,
    }


def test_verdict_words():
    assert classifier_study.verdict(entry(0.05, 0.03, 0.07, 0.9)) == "better"
    assert classifier_study.verdict(entry(-0.05, -0.07, -0.03, 0.9)) == "worse"
    assert classifier_study.verdict(entry(0.001, -0.01, 0.012, 0.001)) == "equivalent within ±2 pp"
    assert classifier_study.verdict(entry(0.01, -0.02, 0.04, 0.3)) == "undecided"
    assert classifier_study.verdict(entry(0.01, 0.005, 0.015, 0.001)) == "better, but within ±2 pp"
    assert (
        classifier_study.verdict(entry(-0.01, -0.015, -0.005, 0.001)) == "worse, but within ±2 pp"
    )
    assert (
        classifier_study.verdict(entry(0.0, -0.01, 0.01, 0.04, margin=0.05))
        == "equivalent within ±5 pp"
    )
    # p = alpha is not below it
    assert classifier_study.verdict(entry(0.0, -0.01, 0.01, 0.05)) == "undecided"
    assert (
        classifier_study.verdict(entry(0.0, float("nan"), float("nan"), float("nan")))
        == "undecided"
    )
    assert (
        classifier_study.verdict(
            {"n_train": 6, "condition": "(3) + VAE samples", "runs": 1, "dropped": 1}
        )
        == "too few runs"
    )


def test_summarize_gives_every_entry_its_verdict_and_a_degenerate_interval_without_spread():
    rows = [
        {
            "seed": seed,
            "n_train": 6,
            "error": "",
            "balanced_accuracy|(1) original": 0.5,
            **{
                f"balanced_accuracy|{c}": 0.5
                for c in list(classifier_study.experiment.STUDY_CONDITIONS)[1:]
            },
        }
        for seed in range(2)
    ]
    # dropped in one run: too few pairs
    rows[0]["balanced_accuracy|(3) + VAE samples"] = float("nan")
    rows[1]["balanced_accuracy|(2) classical augmentation"] = 0.6
    # a failed run is left out
    rows.append({"seed": 2, "n_train": 6, "error": "RuntimeError: boom"})
    summary = {e["condition"]: e for e in classifier_study.summarize(rows)}
    same = summary["(7) + copy-paste cracks"]  # the same score in every run: no spread
    assert (
        same["mean"],
        same["ci_low"],
        same["ci_high"],
        same["p"],
        same["tost_p"],
        same["mde"],
    ) == (0, 0, 0, 1, 0, 0)
    assert same["verdict"] == "equivalent within ±2 pp"
    assert (
        summary["(3) + VAE samples"]["verdict"] == "too few runs"
        and summary["(3) + VAE samples"]["dropped"] == 1
    )
    # two runs, +0 and +10 points
    assert summary["(2) classical augmentation"]["verdict"] == "undecided"
    means = {m["condition"]: m for m in classifier_study.condition_means(rows)}
    assert list(means) == list(classifier_study.experiment.STUDY_CONDITIONS)
    assert (
        means["(2) classical augmentation"]["mean"] == pytest.approx(0.55)
        and means["(1) original"]["runs"] == 2
    )
    assert means["(3) + VAE samples"]["runs"] == 1 and np.isnan(
        means["(3) + VAE samples"]["ci_low"]
    )


def test_read_study_handles_a_missing_table_and_refuses_other_kinds(tmp_path):
    table = classifier_study.read_study("classifier", tmp_path)
    assert table["path"] == tmp_path / "studies" / "classifier.csv" and not table["path"].exists()
    assert (table["done"], table["failed"], table["planned"]) == ([], [], 60)
    assert 1 < table["hours"] < 10
    # a partial table: its grid file says how many runs are planned; a failed run is counted apart
    config = study.configurations(study.GRIDS["classifier"][1], "classifier")[0]
    study.write_table(
        table["path"],
        [
            {
                "key": "a",
                **config,
                "version": 1,
                "error": "",
                "balanced_accuracy|(1) original": 0.7,
            },
            {"key": "b", **config, "seed": 1, "version": 1, "error": "ValueError: x"},
        ],
    )
    table["path"].with_suffix(".grid.json").write_text(
        json.dumps({"kind": "classifier", "grid": {"seed": [0, 1]}, "runs": 2})
    )
    partial = classifier_study.read_study("classifier", tmp_path)
    assert (len(partial["done"]), len(partial["failed"]), partial["planned"]) == (1, 1, 2)
    assert partial["done"][0]["balanced_accuracy|(1) original"] == 0.7
    with pytest.raises(study.StudyError, match="not a classifier study.*'tiny-classifier'"):
        classifier_study.read_study("tiny", tmp_path)
    with pytest.raises(study.StudyError, match="not a classifier study"):
        classifier_study.read_study("no-such-study", tmp_path)


def test_classifier_grid_is_checked():
    assert len(study.configurations(study.GRIDS["classifier"][1], "classifier")) == 60
    with pytest.raises(study.StudyError, match="unknown module_type"):
        study.configurations({"module_type": ["thin-film"]}, "classifier")


@pytest.mark.slow
def test_one_tiny_classifier_run_records_seven_conditions(tmp_path):
    kind, grid = study.GRIDS["tiny-classifier"]
    row = study.run_one(study.configurations(grid, kind)[0], str(tmp_path), kind=kind)
    assert row["error"] == "", row["error"]
    conditions = classifier_study.experiment.STUDY_CONDITIONS
    for condition in conditions:
        value = row[f"balanced_accuracy|{condition}"]
        assert np.isnan(value) or 0 <= value <= 1
    collapsed = row["vae_defective_collapsed"] or row["vae_functional_collapsed"]
    # a collapsed VAE's conditions are dropped
    assert np.isnan(row["roc_auc|(3) + VAE samples"]) == collapsed
    assert not np.isnan(row["balanced_accuracy|(7) + copy-paste cracks"])  # needs no VAE
    assert row["n_test"] > 100 and row["closest_rms"] > 0


def test_copy_paste_pairs_return_each_crack_with_the_cell_it_was_pasted_on(crack_images):
    cracks = crack_images(count=4, size=32, seed=1)
    plain = np.stack([np.full((32, 32, 1), level, np.float32) for level in (0.6, 0.7, 0.8)])
    pasted, backgrounds = classifier.copy_paste_pairs(cracks, plain, 6, seed=0)
    assert np.array_equal(pasted, classifier.copy_paste_cracks(cracks, plain, 6, seed=0))
    for crack, background in zip(pasted, backgrounds):
        assert any(np.array_equal(background, cell) for cell in plain)
        assert (crack <= background + 1e-7).all() and (crack < background - 0.01).any()
        assert np.isclose(np.median(crack), background[0, 0, 0])  # the crack sits on this very cell


def test_the_balanced_copy_paste_condition_adds_as_many_functional_cells_as_cracked_ones():
    experiment = classifier_study.experiment
    train = np.zeros((8, 4, 4, 1), np.float32)
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float32)
    generated = {
        "copy-paste cracks": np.ones((5, 4, 4, 1), np.float32),
        "copy-paste backgrounds": np.ones((5, 4, 4, 1), np.float32),
    }
    counts = {}
    for condition in experiment.BALANCE_CONDITIONS:
        _, condition_labels, _ = experiment.training_set(
            condition, train, labels, generated, experiment.BALANCE_CONDITIONS
        )
        counts[condition] = (int(condition_labels.sum()), int((condition_labels == 0).sum()))
    assert counts == {
        "(1) original": (4, 4),
        "(7) + copy-paste cracks": (9, 4),
        "(8) + copy-paste, balanced": (9, 9),
    }


@pytest.mark.slow
def test_one_tiny_balance_run_trains_no_vae_and_records_three_conditions(tmp_path):
    kind, grid = study.GRIDS["tiny-classifier-balance"]
    row = study.run_one(study.configurations(grid, kind)[0], str(tmp_path), kind=kind)
    assert row["error"] == "", row["error"]
    assert not any(column.startswith("vae_") for column in row)
    assert not list(tmp_path.rglob("vae.keras"))
    recorded = {column.split("|")[1] for column in row if column.startswith("roc_auc|")}
    assert recorded == set(classifier_study.experiment.BALANCE_CONDITIONS)
    assert all(0 <= row[f"balanced_accuracy|{condition}"] <= 1 for condition in recorded)
    ordered = classifier_study.summarize(
        [row, {**row, "seed": 1}],
        conditions=("(7) + copy-paste cracks", "(8) + copy-paste, balanced"),
    )
    assert [entry["condition"] for entry in ordered] == ["(8) + copy-paste, balanced"]
