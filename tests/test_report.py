"""results/summary.json is merged per notebook and stays valid JSON."""
import json

import numpy as np

from vae_overlay import report


def test_record_merges_and_converts(tmp_path):
    report.record("01", {"n": np.int64(80), "shape": (80, 64, 64, 1)}, tmp_path)
    report.record("02", {"loss": np.float32(1.5), "spread": np.array([[-1.0, 2.0]]), "bad": float("nan")}, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["01"] == {"n": 80, "shape": [80, 64, 64, 1]}
    assert summary["02"] == {"loss": 1.5, "spread": [[-1.0, 2.0]], "bad": None}
    report.record("01", {"n": 3}, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["01"] == {"n": 3}


def test_report_lists_every_claim_and_says_what_is_missing(tmp_path):
    report.record("02_train_vae", {"epochs": 100, "final_loss": 2000.0, "latent_min": [-3.0, -2.0],
                                   "latent_max": [3.0, 2.5], "figures": ["loss.png"]}, tmp_path)
    text = report.write_report(tmp_path).read_text()
    assert text.count("\n| ") == 1 + 9  # header + one row per claim
    assert "100 epochs" in text and "(-3.00, -2.00)" in text and "[loss.png](figures/loss.png)" in text
    assert "not measured: run notebook 05" in text and "not measured: run notebook 06" in text
