"""Notebook 07 runs a (tiny) study itself on a LocalCluster, reads its table and records the
verdicts."""

import json

import pytest


@pytest.mark.slow
def test_notebook07_runs_a_tiny_study_and_summarizes_it(tmp_path, run_notebook):
    _, results = run_notebook(
        "07_section3_study.ipynb",
        tmp_path,
        STUDY="tiny",
        RESULTS_DIR=str(tmp_path / "results"),
        RUN_STUDY=True,
        WORKERS=1,
    )
    recorded = json.loads((results / "summary.json").read_text())["07_section3_study"]
    assert (
        recorded["runs_finished"] == recorded["runs_planned"] == 4 and recorded["runs_failed"] == 0
    )
    configurations = recorded["configurations"]
    assert set(configurations) == {"synthetic|16|sum", "synthetic|16|keras-io-2020"}
    for entry in configurations.values():
        assert (
            entry["runs"] == 2 and entry["collapsed"] + entry["one_axis"] + entry["two_axes"] == 2
        )
        assert (
            0 <= entry["collapsed_low"] <= entry["collapsed_rate"] <= entry["collapsed_high"] <= 1
        )
    rows = (results / "studies" / "tiny.csv").read_text().splitlines()
    assert len(rows) == 1 + 4
    for name in ("fig7_study_reach", "fig7_study_rates", "fig7_study_representatives"):
        assert (results / "figures" / f"{name}.png").is_file()
