"""DATASET, the parameter the notebooks share: the images it names, the folder of their artifacts.

A DATASET is one of the built-in sources (`BUILT_IN`: the ELPV sources of `vae_overlay.elpv`, the
synthetic one of `vae_overlay.synth`) or a folder of images (loaded by `vae_overlay.data`'s rule).
This module sits above all three, so that they never import each other to dispatch: `load_source`
picks the loader, `run_dir` names the folder of a dataset's artifacts (dataset.npz, vae.keras,
history.json).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vae_overlay import data, runs

# the DATASETs that are not folders
BUILT_IN = ("elpv-cracks", "elpv-crack-patches", "elpv-crack-patches-wide", "synthetic")
PATH_DIGITS = 6  # hex digits of a folder's path hash in its run name (the folders on disk carry 6)


def load_source(
    dataset: str, size: int, seed: int = 42, synthetic_count: int = 80
) -> data.LoadedImages:
    """DATASET ("elpv-cracks", "elpv-crack-patches", "synthetic", or a folder) -> LoadedImages at
    `size` px."""
    if dataset.startswith("elpv-"):
        from vae_overlay import elpv

        return elpv.load(dataset, size)
    if dataset == "synthetic":
        from vae_overlay import synth

        images, _, kinds = synth.make_dataset(
            synthetic_count, size=size, seed=seed, kinds=("crack",), crack_fraction=1.0
        )
        names = [f"synthetic_{kind}_{i:03d}" for i, kind in enumerate(kinds)]
        source = f"synthetic (seed {seed})"
        return data.LoadedImages(images.astype(np.float32), names, source=source)
    return data.load_folder(data.resolve_folder(dataset), size)


def run_name(dataset: str) -> str:
    """Name of the artifacts folder for a dataset: a built-in set's name, or a folder's name and the
    hash of its path.

    The hash of the folder's absolute path keeps two folders called `mine`, or a folder called
    `synthetic`, from sharing one artifacts folder.
    """
    if dataset in BUILT_IN:
        return runs.folder_name(dataset)
    folder = data.resolve_folder(str(dataset).rstrip("/\\")).resolve()
    return runs.folder_name(folder.name or "dataset", str(folder), PATH_DIGITS)


def dataset_label(name: str) -> str:
    """A `run_name` as a reader calls the dataset, without the path hash: "my_cracks-6b0498" ->
    "my_cracks"."""
    return re.sub(rf"-[0-9a-f]{{{PATH_DIGITS}}}$", "", name)


def run_dir(artifacts_dir: str | Path, dataset: str) -> Path:
    """The folder holding one dataset's artifacts (created if missing)."""
    folder = Path(artifacts_dir) / run_name(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
