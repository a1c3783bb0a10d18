"""Notebook 02 on a folder of the user's, streamed through the disk cache, without notebook 01."""

import json

import numpy as np
import pytest
from PIL import Image

from vae_overlay import datasets, synth


@pytest.mark.slow
def test_notebook02_streams_a_folder_without_notebook01(tmp_path, run_notebook, notebook_text):
    """STREAMING = True: notebook 02 reads a folder itself, through the disk cache, and trains on
    it."""
    folder = tmp_path / "my images"
    folder.mkdir()
    images, _, _ = synth.make_dataset(24, size=80, seed=5, kinds=("crack",), crack_fraction=1.0)
    for i, image in enumerate(images):
        Image.fromarray((image[..., 0] * 255).astype(np.uint8)).save(folder / f"crack_{i:02d}.png")
    (folder / "notes.txt").write_text("not an image")
    _, results = run_notebook(
        "02_train_vae.ipynb", tmp_path, DATASET=str(folder), STREAMING=True, IMAGE_SIZE=32, EPOCHS=2
    )
    summary = json.loads((results / "summary.json").read_text())["02_train_vae"]
    assert summary["epochs"] == 2 and summary["image_size"] == 32 and summary["n_images"] == 24
    assert summary["latent_means_finite"] is True
    run = datasets.run_dir(tmp_path / "artifacts", str(folder))
    assert (run / "vae.keras").is_file() and len(
        list((run / "image-cache").glob("images-*.f32"))
    ) == 1
    assert not (run / "dataset.npz").exists()  # notebook 01 was not needed
    # notebooks 03 and 04 open the streamed training through an even sample of the stream (here all
    # 24 images)
    for name, extra in (
        ("03_latent_distribution.ipynb", {}),
        ("04_sample_latent_space.ipynb", {"FULL_SWEEP": False}),
    ):
        notebook, _ = run_notebook(name, tmp_path, DATASET=str(folder), IMAGE_SIZE=32, **extra)
        assert "streamed training: analysing an even sample of 24 of 24 images" in notebook_text(
            notebook
        )
