"""The ELPV solar-cell images (Buerhop-Lutz et al. 2018; Deitsch et al. 2019; CC BY-NC-SA 4.0), read
from the `elpv-dataset` pip package, never from files in this repository: the committed list of 80
crack cells, the crack finder (`ridge_map`, `crack_score`, `crack_centre`) and the data sources
built on them:

* `elpv-cracks`: the 80 cells whole, shrunk to the image size;
* `elpv-crack-patches`: crops of the image size at native resolution around each cell's crack;
* `elpv-crack-patches-wide`: 128 px crops around the same cracks, shrunk to the image size: at 64 px
  the field of view of a 128 px patch with the pixel count of a 64 px one, so a study can tell image
  size from field of view.

    # rebuild the committed lists:
    python -m vae_overlay.elpv --write-elpv-list --write-elpv-patches
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from vae_overlay.data import DatasetError, LoadedImages, project_root, square_resize, stack_images
from vae_overlay.runs import atomic_write_text

ELPV_LIST = "data/elpv_cracks.csv"
ELPV_PATCHES = "data/elpv_crack_patches.csv"
ELPV_SIDE = 300  # every ELPV cell is 300 x 300 px
PATCH_SIDES = (64, 128)  # the crop sides whose crack centres data/elpv_crack_patches.csv records
WIDE_SIDE = 128  # the crop side of elpv-crack-patches-wide


def elpv_labels() -> list[tuple[str, float, str]]:
    """(file name, defect probability, module type) for all 2,624 cells of the elpv-dataset
    package."""
    with open(elpv_folder() / "labels.csv") as labels:
        rows = [line.split() for line in labels if line.strip()]
    return [(Path(path).name, float(probability), kind) for path, probability, kind in rows]


def elpv_folder() -> Path:
    """The data folder of the installed elpv-dataset package (labels.csv, images/)."""
    try:
        import elpv_dataset
    except ImportError:
        raise DatasetError(
            "The ELPV images come from the pip package 'elpv-dataset'; install the project's "
            "requirements (make reproduce does it) or pip install elpv-dataset."
        ) from None
    return Path(elpv_dataset.__file__).parent / "data"


def elpv_image(name: str) -> np.ndarray:
    """One ELPV cell as (300, 300) float32 in [0, 1]."""
    with Image.open(elpv_folder() / "images" / name) as image:
        return np.asarray(image, np.float32) / 255.0


def ridge_map(cell: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel thin-dark-line response of a cell (float64, its shape): the Hessian's largest
    eigenvalue at scale `sigma`, scale-normalised (large across a thin dark line), weighted by |sin|
    of the angle between the line and the horizontal busbars, so busbars and the cell's frame score
    nothing. scipy's Gaussian-derivative filters: scikit-image's hessian_matrix chains two
    first-derivative filters at sigma/sqrt(2) and differs by up to ~25 %, which would change the
    committed lists."""
    image = cell.astype(np.float64)
    ixx, iyy, ixy = (
        ndimage.gaussian_filter(image, sigma, order=order) for order in ((0, 2), (2, 0), (1, 1))
    )
    half_trace, root = (ixx + iyy) / 2, np.sqrt(((ixx - iyy) / 2) ** 2 + ixy**2)
    ridge = np.maximum(half_trace + root, 0) * sigma**2  # scale-normalised
    # eigenvector of the largest eigenvalue points across the line; the line runs perpendicular
    across = 0.5 * np.arctan2(2 * ixy, ixx - iyy)  # angle of the across-direction from x
    weight = np.abs(np.cos(across))  # across-direction horizontal -> line vertical -> weight 1
    return ridge * weight


def crack_score(cell: np.ndarray, sigma: float = 1.5, border: int = 20) -> float:
    """Crack strength of a cell: the mean of the top 1 % of its `ridge_map` inside the cell (a
    `border` cut off), minus 0.5 x the fraction of pixels darker than half the median (large dark
    areas are dead regions or shading, not cracks)."""
    inner = ridge_map(cell, sigma)[border:-border, border:-border]
    top = np.sort(inner.ravel())[-max(1, inner.size // 100) :]
    core = cell.astype(np.float64)[border:-border, border:-border]
    dark_fraction = float((core < 0.5 * np.median(core)).mean())
    return float(top.mean() - 0.5 * dark_fraction)


def crack_centre(
    cell: np.ndarray, window: int, sigma: float = 1.5, border: int = 20
) -> tuple[int, int]:
    """(row, col) of the crack for window x window crops: the centre of the box of that size inside
    the cell with the highest mean `ridge_map`, zero within `border` of the edge as in `crack_score`
    (means to 1e-9; ties: first row-major)."""
    # zero at the border
    response = np.pad(ridge_map(cell, sigma)[border:-border, border:-border], border)
    # box rows r - w//2 .. r + (w-1)//2
    box_mean = ndimage.uniform_filter(response, window, mode="constant")
    half, (height, width) = window // 2, cell.shape
    inside = np.round(
        box_mean[half : height - window + half + 1, half : width - window + half + 1], 9
    )
    row, col = np.unravel_index(int(np.argmax(inside)), inside.shape)
    return int(row) + half, int(col) + half


def patch_corner(centre: tuple[int, int], side: int, shape: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of the side x side crop centred on `centre`, shifted to stay inside `shape`."""
    return tuple(int(np.clip(c - side // 2, 0, extent - side)) for c, extent in zip(centre, shape))


def select_elpv_cracks(count: int = 80, module_type: str = "mono", probability: float = 1.0):
    """The documented ELPV crack subset: (name, score) of the `count` best-scoring cells."""
    candidates = [
        name for name, prob, kind in elpv_labels() if prob == probability and kind == module_type
    ]
    scored = [(name, crack_score(elpv_image(name))) for name in candidates]
    scored.sort(key=lambda item: (-round(item[1], 6), item[0]))
    return scored[:count]


def write_list(path: str | Path, header: str, rows) -> Path:
    """Write a committed list in data/: CSV with `header`, one line per row."""
    atomic_write_text(path, header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return Path(path)


def read_committed(path: str | Path | None, default: str, option: str) -> list[dict]:
    """The rows of a committed list in data/, or a DatasetError saying how to regenerate it."""
    path = Path(path) if path else project_root(Path(__file__).parent) / default
    if not path.is_file():
        raise DatasetError(
            f"The list {path} is missing; regenerate it with `python -m vae_overlay.elpv {option}`."
        )
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def read_elpv_list(path: str | Path | None = None) -> list[str]:
    """Cell file names of the committed ELPV crack list, in rank order."""
    return [row["name"] for row in read_committed(path, ELPV_LIST, "--write-elpv-list")]


def read_elpv_patches(side: int, path: str | Path | None = None) -> list[tuple[str, int, int]]:
    """(cell name, centre row, centre col) for side x side crops, from the committed crack-patch
    list."""
    rows = read_committed(path, ELPV_PATCHES, "--write-elpv-patches")
    return [
        (row["name"], int(row["row"]), int(row["col"])) for row in rows if int(row["side"]) == side
    ]


def load_elpv_cracks(size: int, names: list[str] | None = None) -> LoadedImages:
    """The committed list of 80 ELPV crack cells as LoadedImages at `size` px."""
    names = names or read_elpv_list()
    images = [square_resize(elpv_image(name), size) for name in names]
    return LoadedImages(
        stack_images(images, size), list(names), source="elpv-cracks (elpv-dataset package)"
    )


def load_elpv_patches(size: int) -> LoadedImages:
    """size x size crops of the listed cells at native resolution around their `crack_centre`, named
    `<cell>@r<top>c<left>`: the committed centres for PATCH_SIDES, computed on loading for other
    sizes."""
    check_patch_size(size)
    cells = {name: elpv_image(name) for name in read_elpv_list()}
    if size in PATCH_SIDES:
        centres = read_elpv_patches(size)
    else:
        centres = [(name, *crack_centre(cell, size)) for name, cell in cells.items()]
    return crop_patches(cells, centres, size, "elpv-crack-patches (elpv-dataset package)")


def load_held_out_patches(size: int, count: int = 80) -> LoadedImages:
    """Crack patches the committed list does not hold: the cells ranked after it by
    `select_elpv_cracks` (the next `count` mono cells of defect probability 1 by crack score),
    cropped like `load_elpv_patches` around their `crack_centre` (computed). Real cracks a model
    trained on `elpv-crack-patches` has never seen, to judge how realistic its samples are
    (realism_study.py)."""
    check_patch_size(size)
    listed = set(read_elpv_list())
    ranked = [name for name, _ in select_elpv_cracks(len(listed) + count)]
    cells = {name: elpv_image(name) for name in ranked if name not in listed}
    centres = [(name, *crack_centre(cell, size)) for name, cell in list(cells.items())[:count]]
    return crop_patches(cells, centres, size, "held-out ELPV crack patches (elpv-dataset package)")


def check_patch_size(size: int) -> None:
    if not 1 <= size <= ELPV_SIDE:
        raise DatasetError(
            f"IMAGE_SIZE {size} does not fit inside a {ELPV_SIDE} x {ELPV_SIDE} px ELPV "
            "cell: crack patches are cut at native resolution, without resampling; use a "
            f"size from 1 to {ELPV_SIDE} (64 or 128)."
        )


def crop_patches(cells: dict, centres, size: int, source: str) -> LoadedImages:
    """The size x size crop of each cell around its (name, row, col) centre, named
    `<cell>@r<top>c<left>`."""
    corners = [(name, *patch_corner(centre, size, cells[name].shape)) for name, *centre in centres]
    images = [cells[name][top : top + size, left : left + size] for name, top, left in corners]
    names = [f"{Path(name).stem}@r{top}c{left}" for name, top, left in corners]
    return LoadedImages(stack_images(images, size), names, source=source)


def load_wide_patches(size: int) -> LoadedImages:
    """The WIDE_SIDE crops of `load_elpv_patches`, each shrunk to `size` px (the same cracks, a
    wider view)."""
    wide = load_elpv_patches(WIDE_SIDE)
    images = [square_resize(image[..., 0], size) for image in wide.images]
    return LoadedImages(
        stack_images(images, size),
        wide.names,
        source=f"elpv-crack-patches-wide ({WIDE_SIDE} px crops at {size} px, elpv-dataset package)",
    )


def load(dataset: str, size: int) -> LoadedImages:
    """One of this module's data sources at `size` px."""
    loaders = {
        "elpv-cracks": load_elpv_cracks,
        "elpv-crack-patches": load_elpv_patches,
        "elpv-crack-patches-wide": load_wide_patches,
    }
    return loaders[dataset](size)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        description="Rebuild the committed ELPV lists from the elpv-dataset package."
    )
    parser.add_argument("--write-elpv-list", action="store_true", help=f"recompute {ELPV_LIST}")
    parser.add_argument(
        "--write-elpv-patches",
        action="store_true",
        help=f"recompute {ELPV_PATCHES} (cells of {ELPV_LIST})",
    )
    parser.add_argument("--count", type=int, default=80)
    args = parser.parse_args()
    if args.write_elpv_list:
        rows = [
            (rank, name, f"{score:.6f}")
            for rank, (name, score) in enumerate(select_elpv_cracks(args.count), 1)
        ]
        print("wrote", write_list(project_root() / ELPV_LIST, "rank,name,score", rows))
    if args.write_elpv_patches:
        rows = [
            (rank, name, *crack_centre(elpv_image(name), side), side)
            for side in PATCH_SIDES
            for rank, name in enumerate(read_elpv_list(), 1)
        ]
        print("wrote", write_list(project_root() / ELPV_PATCHES, "rank,name,row,col,side", rows))
