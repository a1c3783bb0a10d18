"""Notebook 05b (the Section 4 studies): it runs two tiny studies itself on a LocalCluster of one
worker, reads their tables, shows them as tables and figures, and records what it read."""

import json

import pytest


@pytest.mark.slow
def test_notebook05b_runs_tiny_studies_and_shows_them(tmp_path, run_notebook, notebook_text):
    notebook, results = run_notebook(
        "05b_overlay_studies.ipynb",
        tmp_path,
        STUDY_RESULTS_DIR=str(tmp_path / "results"),
        VARIANT_STUDY="tiny4",
        DIMS_STUDY="tiny4-dims",
        SETS_STUDY="tiny4-sets",
        REALISM_STUDY="tiny-realism",
        RUN_STUDIES=True,
        WORKERS=1,
    )
    text = notebook_text(notebook)
    assert (
        "tiny4.csv: 4 of 4 runs finished, 0 failed" in text
        and "tiny4-dims.csv: 2 of 2 runs finished, 0 failed" in text
    )
    studies = json.loads((results / "summary.json").read_text())["05b_overlay_studies"]
    variants = studies["variants"]
    assert (variants["study"], variants["runs_finished"], variants["runs_planned"]) == (
        "tiny4",
        4,
        4,
    )
    assert set(variants["configurations"]) == {
        f"{s}|{v}" for s in ("paper-trio", "distinct") for v in ("paper", "free bits")
    }
    for entry in variants["configurations"].values():
        assert (
            entry["runs"] == 1
            and entry["separated"] + entry["overlapping"] + entry["collapsed"] == 1
        )
        assert (
            entry["fidelity|latent sum|low"]
            <= entry["fidelity|latent sum|diff"]
            <= entry["fidelity|latent sum|high"]
        )
    assert (
        set(studies["dims"]["configurations"]) == {"2", "3"}
        and studies["dims"]["runs_finished"] == 2
    )
    tables = [
        "".join(o["data"]["text/html"])
        for cell in notebook["cells"]
        for o in cell.get("outputs", [])
        if "text/html" in o.get("data", {})
    ]
    # three scores of the variants, two of the dimensions
    assert sum("latent sum - mean" in t for t in tables) == 3 + 2
    assert (
        "tiny4-sets.csv: 3 of 3 runs finished, 0 failed" in text
        and "tiny4-sets: 3 source sets in 3 runs" in text
    )
    assert set(studies["sets"]["arms"]) == {
        f"{arm}|paper" for arm in ("same-surface", "distinct", "elpv")
    }
    assert studies["realism"]["runs_finished"] == 4 and set(studies["realism"]["dims"]) == {
        "2",
        "4",
    }
    assert all(entry["runs"] == 2 for entry in studies["realism"]["dims"].values())
    for name in (
        "fig5c_variant_study",
        "fig5e_latent_dimension_study",
        "fig5g_source_sets",
        "fig5f_latent_realism",
    ):
        assert (results / "figures" / f"{name}.png").is_file()
