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
