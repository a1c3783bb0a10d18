"""Notebook 05 (the overlay experiment): its cells stay short, and it runs end to end with small
parameters.

The defaults train two models of 3,000 steps (minutes on a 2-core machine); the small runs below
train a few steps per model on 32 px images and check the summary.json the notebook records and the
figures it saves. Notebook 05b (the studies) has its own test.
"""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "05_overlay_defects.ipynb"
SMALL_05 = {
    "IMAGE_SIZE": 32,
    "COPIES": 8,
    "OVERLAY_EPOCHS": 2,
    "N_LATENT_SAMPLES": 50,
    "WEIGHTS": [0.5, 2.0],
}
FIGURES = (
    "fig4_overlay_sources",
    "fig5_overlays_paper_recipe",
    "fig5a_overlay_latents",
    "fig5b_overlay_methods",
    "fig5d_latent_plane",
)


def source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_committed_notebook_is_short_calls_with_its_parameters_and_no_machine_paths():
    notebook = json.loads(NOTEBOOK.read_text())
    code = [source(cell) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert max(len(text.splitlines()) for text in code) <= 25
    assert not any(
        line.startswith(("def ", "class ")) for text in code for line in text.splitlines()
    )
    parameters = [
        cell for cell in notebook["cells"] if "parameters" in cell["metadata"].get("tags", [])
    ]
    assert len(parameters) == 1
    names = {
        line.split("=")[0].strip()
        for line in source(parameters[0]).splitlines()
        if "=" in line and line[0].isupper()
    }
    assert (
        set(SMALL_05)
        | {
            "DATASET",
            "OVERLAY_IMAGES",
            "ARTIFACTS_DIR",
            "FIGURES_DIR",
            "RETRAIN",
            "FIXED_VARIANT",
            "BATCH_SIZE",
            "LEARNING_RATE",
            "SEED",
            "LATENT_DIM",
        }
        <= names
    )
    assert sum("# NBVAL_CHECK_OUTPUT" in text for text in code) >= 8
    assert any('report.record("05_overlay_defects"' in text for text in code)
    text = NOTEBOOK.read_text()
    assert NOTEBOOK.stat().st_size < 2_000_000 and str(ROOT) not in text and "/tmp/" not in text


@pytest.mark.slow
def test_notebook05_small(tmp_path, run_notebook, notebook_text):
    notebook, results = run_notebook("05_overlay_defects.ipynb", tmp_path, **SMALL_05)
    text = notebook_text(notebook)
    assert "sources: ['crack_1', 'crack_2', 'pore'] (3, 32, 32, 1) float32" in text
    assert (
        "training images: 24 = 8 copies x 3 sources; 3 batches per epoch, 6 steps in 2 epochs"
        in text
    )
    summary = json.loads((results / "summary.json").read_text())["05_overlay_defects"]
    assert (summary["image_size"], summary["copies"], summary["epochs"], summary["latent_dim"]) == (
        32,
        8,
        2,
        2,
    )
    for key in ("paper_recipe", "fixed_variant"):
        assert 1 <= summary[key]["n_clusters"] <= 3 and 0 <= summary[key]["dead_units"] <= 16
        assert summary[key]["verdict"] in ("collapsed", "overlapping", "separated")
        assert len(summary[key]["kl_per_source"]) == 3
    assert summary["fixed_variant"]["name"] == "standardised + leaky"
    scores = summary["fidelity_mean_score"]
    assert len(scores) == 10 and {
        "pixel mean (baseline)",
        "pixel compositing (darkest)",
        "paper: latent sum",
        "fixed: decoded compositing",
    } <= set(scores)
    # the best of WEIGHTS
    assert len({"fixed: weighted, w=0.5", "fixed: weighted, w=2"} & set(scores)) == 1
    assert all(0 <= value <= 1 for value in scores.values())
    # compositing shows every defect
    assert scores["pixel compositing (darkest)"] > scores["pixel mean (baseline)"]
    assert 0 < summary["defect_threshold"] < 0.3
    assert "same seed, same overlays: True" in text
    for name in FIGURES:
        assert (results / "figures" / f"{name}.png").is_file()


@pytest.mark.slow
def test_notebook05_small_on_two_images_without_masks(tmp_path, run_notebook, notebook_text):
    folder = tmp_path / "my defects"
    folder.mkdir()
    for name in ("crack_1", "pore"):  # the images only, not their masks
        (folder / f"{name}.png").write_bytes(
            (ROOT / "data" / "synthetic" / f"{name}.png").read_bytes()
        )
    notebook, results = run_notebook(
        "05_overlay_defects.ipynb",
        tmp_path,
        **{
            **SMALL_05,
            "OVERLAY_IMAGES": [str(folder / "crack_1.png"), str(folder / "pore.png")],
            "DATASET": "mine",
        },
    )
    text = notebook_text(notebook)
    assert "sources: ['crack_1', 'pore'] (2, 32, 32, 1) float32" in text
    assert (
        "masks: none (fidelity cannot be measured)" in text
        and "no masks: no fidelity table" in text
    )
    summary = json.loads((results / "summary.json").read_text())["05_overlay_defects"]
    assert summary["fidelity_mean_score"] == {} and summary["defect_threshold"] is None
    assert (
        summary["paper_recipe"]["n_clusters"] in (1, 2)
        and len(summary["paper_recipe"]["kl_per_source"]) == 2
    )
    # its own artifacts folder
    assert [p.name[:5] for p in (tmp_path / "artifacts").iterdir()] == ["mine-"]
    for name in FIGURES:
        assert (results / "figures" / f"{name}.png").is_file()
