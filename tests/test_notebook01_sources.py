"""Notebook 01 runs with every kind of DATASET: the built-in sources and a folder of mixed, partly
broken files."""

import json
from pathlib import Path

import numpy as np
import papermill
import pytest
from PIL import Image

from vae_overlay import data, datasets

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_prepare_dataset.ipynb"


def run_notebook01(tmp_path, dataset, image_size=32):
    """Execute notebook 01; returns its printed text (FIGURES_DIR is tmp_path/figures, so
    summary.json is in tmp_path)."""
    out = tmp_path / "01_out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        cwd=str(NOTEBOOK.parent),
        progress_bar=False,
        parameters={
            "DATASET": dataset,
            "IMAGE_SIZE": image_size,
            "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
            "FIGURES_DIR": str(tmp_path / "figures"),
        },
    )
    cells = json.loads(out.read_text())["cells"]
    texts = [o.get("text", "") for c in cells if c["cell_type"] == "code" for o in c["outputs"]]
    return "".join("".join(t) if isinstance(t, list) else t for t in texts)


@pytest.mark.slow
def test_notebook01_on_a_mixed_broken_folder(tmp_path):
    folder = tmp_path / "my images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((50, 70)) * 255).astype(np.uint8)).save(
            folder / f"ok_{i}.png"
        )
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(folder / "colour.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (folder / "readme.txt").write_text("hello")
    (folder / "zero.tif").write_bytes(b"")
    text = run_notebook01(tmp_path, str(folder))
    assert "loaded 4 image(s), skipped 3" in text
    for name in ("broken.png", "readme.txt", "zero.tif"):
        assert f"skipped {name}:" in text
    run = datasets.run_dir(tmp_path / "artifacts", str(folder))
    images, names = data.load_dataset(run / "dataset.npz")
    assert datasets.run_name(str(folder)).startswith("my_images-")
    assert images.shape == (4, 32, 32, 1) and names == [
        "colour.jpg",
        "ok_0.png",
        "ok_1.png",
        "ok_2.png",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("dataset,size", [("synthetic", 32), ("elpv-crack-patches", 64)])
def test_notebook01_on_a_built_in_source(tmp_path, dataset, size):
    run_notebook01(tmp_path, dataset, size)
    summary = json.loads((tmp_path / "summary.json").read_text())["01_prepare_dataset"]
    assert (summary["dataset"], summary["images"], summary["image_size"], summary["skipped"]) == (
        dataset,
        80,
        size,
        0,
    )
    images, names = data.load_dataset(tmp_path / "artifacts" / dataset / "dataset.npz")
    expected = datasets.load_source(dataset, size)
    assert np.array_equal(images, expected.images) and names == expected.names
    assert (tmp_path / "figures" / f"fig1_examples_{dataset}.png").is_file()


@pytest.mark.parametrize(
    "dataset,size,message",
    [
        ("no such folder", 32, "does not exist"),
        ("elpv-crack-patches", 512, "IMAGE_SIZE 512 does not fit inside a 300 x 300 px ELPV cell"),
    ],
    ids=["missing-folder", "patch-larger-than-cell"],
)
def test_notebook01_refuses_a_bad_source(tmp_path, dataset, size, message):
    dataset = str(tmp_path / dataset) if dataset == "no such folder" else dataset
    with pytest.raises(papermill.PapermillExecutionError, match=message):
        run_notebook01(tmp_path, dataset, size)
