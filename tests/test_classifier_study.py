"""classifier_study.py and the study's extra conditions: copy-paste cracks, decoded composites, dropped VAEs."""
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
        row["balanced_accuracy|(3) + VAE samples"] = float("nan") if seed < 3 else row["balanced_accuracy|(3) + VAE samples"]
        rows.append(row)
    summary = {entry["condition"]: entry for entry in classifier_study.summarize(rows)}
    assert len(summary) == 6
    gain = summary["(2) classical augmentation"]
    assert gain["ci_low"] > 0.09 and gain["tost_p"] > 0.5 and gain["improved"] == 20
    same = summary["(7) + copy-paste cracks"]
    assert same["ci_low"] < 0 < same["ci_high"] and same["tost_p"] < 0.001 and same["mde"] < 0.01
    assert summary["(3) + VAE samples"]["runs"] == 17 and summary["(3) + VAE samples"]["dropped"] == 3


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
    assert np.isnan(row["roc_auc|(3) + VAE samples"]) == collapsed  # a collapsed VAE's conditions are dropped
    assert not np.isnan(row["balanced_accuracy|(7) + copy-paste cracks"])  # needs no VAE
    assert row["n_test"] > 100 and row["closest_rms"] > 0
