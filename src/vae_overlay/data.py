"""Image folders -> arrays, the ELPV crack cells and crack patches, and the prepared-dataset files.

The loading rule (documented in the README):

* **Which files.** The folder's own files, sorted by name. Sub-folders are not descended into and
  hidden files (names starting with ``.``) are ignored; both are counted in the report. Files whose
  stem ends in ``_mask`` are ground-truth masks, not images, and are listed as such. Every other
  file is offered to Pillow whatever its extension, so a mis-named PNG still loads and a text file
  called ``x.png`` is reported, not crashed on.
* **Refusals.** Empty files, files Pillow cannot identify, truncated or corrupt data, and images
  whose declared size exceeds ``max_pixels`` (a decompression-bomb guard checked *before* the pixel
  data are decoded) are skipped, each with its reason in the report.
* **Pixels.** EXIF orientation is applied; the first frame of a multi-frame file is used; colour is
  converted to grayscale with ITU-R 601 luma (Pillow's ``L``); transparency is composited over
  white; 1-bit, 8-bit, 16-bit and float images are scaled to [0, 1] by their type's full range.
* **Geometry.** Centre-crop to a square, then resize to ``size`` x ``size`` (Lanczos, which
  area-averages on the way down). Cropping rather than padding: padding would paint an artificial
  sharp border into every image, and a sharp transition is one of the three features the paper's
  VAE learns — it would learn our padding instead of the product boundary.
"""
from __future__ import annotations

import csv
import io
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from vae_overlay.runs import atomic_write_bytes, atomic_write_text

DEFAULT_MAX_PIXELS = 64_000_000  # a 8000 x 8000 photo loads; a 100k x 100k bomb does not
ELPV_LIST = "data/elpv_cracks.csv"
BUILT_IN = ("elpv-cracks", "elpv-crack-patches", "synthetic")  # DATASET names that are not folders
ELPV_PATCHES = "data/elpv_crack_patches.csv"
ELPV_SIDE = 300  # every ELPV cell is 300 x 300 px
PATCH_SIDES = (64, 128)  # the crop sides whose crack centres data/elpv_crack_patches.csv records


class DatasetError(ValueError):
    """A dataset folder or file that cannot be used, with what to do about it."""


class ImageSkipped(Exception):
    """One file that is not a usable image; the message is the reason shown in the report."""


@dataclass
class LoadedImages:
    """Images (n, size, size, 1) float32 in [0, 1], their file names, and what was skipped."""

    images: np.ndarray
    names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""

    def report(self) -> str:
        """A human-readable summary: how many loaded, and each skipped file with its reason."""
        lines = [f"{self.source}: loaded {len(self.names)} image(s), skipped {len(self.skipped)}, ignored {len(self.ignored)}"]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        lines += [f"  ignored {name}: {reason}" for name, reason in self.ignored]
        return "\n".join(lines)


def project_root(start: str | Path | None = None) -> Path:
    """The repository root: the nearest folder upwards that holds pyproject.toml."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return Path(__file__).resolve().parents[2]


def _to_unit_float(image: Image.Image) -> np.ndarray:
    """A Pillow image of any mode -> 2-D float32 grayscale in [0, 1]."""
    mode = image.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, image.convert("RGBA")).convert("L"), np.float32) / 255.0
    if mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    if mode == "I":
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max(initial=0) <= 65535 else 2.0**31 - 1
        return np.clip(array / top, 0, 1).astype(np.float32)
    if mode == "F":
        array = np.nan_to_num(np.asarray(image, dtype=np.float32))
        if array.min(initial=0) < 0 or array.max(initial=0) > 1:
            low, high = float(array.min()), float(array.max())
            array = (array - low) / (high - low) if high > low else np.zeros_like(array)
        return array.astype(np.float32)
    if mode == "1":
        return np.asarray(image.convert("L"), np.float32) / 255.0
    if mode != "L":
        image = image.convert("RGB").convert("L")  # palette, CMYK, YCbCr, HSV, LAB ...
    return np.asarray(image, np.float32) / 255.0


def square_resize(array: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop a 2-D array to a square, then resize it to size x size (Lanczos)."""
    height, width = array.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = array[top:top + side, left:left + side]
    if side != size:
        square = np.asarray(Image.fromarray(np.ascontiguousarray(square, dtype=np.float32))
                            .resize((size, size), Image.Resampling.LANCZOS))
    return np.clip(square, 0.0, 1.0).astype(np.float32)


def load_image(path: str | Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """One image file -> (size, size) float32 in [0, 1]; raises ImageSkipped with the reason."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageSkipped("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageSkipped(f"declared size {width}x{height} exceeds the limit of {max_pixels:,} pixels "
                                       "(possible decompression bomb); not decoded")
                if width < 1 or height < 1:
                    raise ImageSkipped(f"declared size {width}x{height} is empty")
                image.seek(0)
                image.load()
                image = ImageOps.exif_transpose(image)
                array = _to_unit_float(image)
    except ImageSkipped:
        raise
    except UnidentifiedImageError:
        raise ImageSkipped("not an image Pillow can identify") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageSkipped(f"refused as a possible decompression bomb, not decoded ({error})") from None
    except (OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError,
            MemoryError, ZeroDivisionError, OverflowError, struct.error) as error:
        reason = str(error) or type(error).__name__
        raise ImageSkipped(f"truncated or corrupt image data ({type(error).__name__}: {reason})") from None
    if not np.isfinite(array).all():
        raise ImageSkipped("image holds non-finite values")
    return square_resize(array, size)


def list_folder(folder: str | Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """(candidate image files sorted by name, ignored entries with reasons); a missing folder is an error."""
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"Image folder {folder} does not exist. Put your images (PNG, JPEG, TIFF, "
                           "BMP, GIF) in a folder such as data/<name>/ and set DATASET to its path.")
    if not folder.is_dir():
        raise DatasetError(f"{folder} is a file, not a folder. Set DATASET to the folder that holds your images.")
    files, ignored = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            ignored.append((entry.name, "hidden file"))
        elif entry.is_dir():
            ignored.append((entry.name + "/", "sub-folder (not descended into)"))
        elif entry.stem.endswith("_mask"):
            ignored.append((entry.name, "mask file (*_mask.*), not a training image"))
        else:
            files.append(entry)
    return files, ignored


def no_usable_image(folder: str | Path, report: str, empty: bool) -> DatasetError:
    detail = "it is empty" if empty else report
    return DatasetError(f"No usable image in {folder}: expected image files (PNG, JPEG, TIFF, BMP, "
                        f"GIF) directly inside it. Found: {detail}")


def load_folder(folder: str | Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImages:
    """Every usable image in `folder` (not sub-folders) -> LoadedImages, with a skip report."""
    files, ignored = list_folder(folder)
    images, names, skipped = [], [], []
    for entry in files:
        try:
            images.append(load_image(entry, size, max_pixels))
            names.append(entry.name)
        except ImageSkipped as reason:
            skipped.append((entry.name, str(reason)))
    loaded = LoadedImages(_stack(images, size), names, skipped, ignored, source=str(folder))
    if not names:
        raise no_usable_image(folder, loaded.report(), empty=not skipped and not ignored)
    return loaded


def _stack(images: list[np.ndarray], size: int) -> np.ndarray:
    """List of (size, size) arrays -> (n, size, size, 1) float32."""
    return np.stack(images)[..., None].astype(np.float32) if images else np.zeros((0, size, size, 1), np.float32)


# --- ELPV ------------------------------------------------------------------------------------

def elpv_labels() -> list[tuple[str, float, str]]:
    """(file name, defect probability, module type) for all 2,624 cells of the elpv-dataset package."""
    with open(elpv_folder() / "labels.csv") as labels:
        rows = [line.split() for line in labels if line.strip()]
    return [(Path(path).name, float(probability), kind) for path, probability, kind in rows]


def elpv_folder() -> Path:
    """The data folder of the installed elpv-dataset package (labels.csv, images/)."""
    try:
        import elpv_dataset
    except ImportError:
        raise DatasetError("The ELPV images come from the pip package 'elpv-dataset'; install the project's "
                           "requirements (make reproduce does it) or pip install elpv-dataset.") from None
    return Path(elpv_dataset.__file__).parent / "data"


def elpv_image(name: str) -> np.ndarray:
    """One ELPV cell as (300, 300) float32 in [0, 1]."""
    with Image.open(elpv_folder() / "images" / name) as image:
        return np.asarray(image, np.float32) / 255.0


def ridge_map(cell: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel thin-dark-line response of a cell (float64, its shape): the Hessian's largest eigenvalue
    at scale `sigma`, scale-normalised (large across a thin dark line), weighted by |sin| of the angle
    between the line and the horizontal busbars, so busbars and the cell's frame score nothing. scipy's
    Gaussian-derivative filters: scikit-image's hessian_matrix chains two first-derivative filters at
    sigma/sqrt(2) and differs by up to ~25 %, which would change the committed lists."""
    image = cell.astype(np.float64)
    ixx, iyy, ixy = (ndimage.gaussian_filter(image, sigma, order=order) for order in ((0, 2), (2, 0), (1, 1)))
    half_trace, root = (ixx + iyy) / 2, np.sqrt(((ixx - iyy) / 2) ** 2 + ixy**2)
    ridge = np.maximum(half_trace + root, 0) * sigma**2  # scale-normalised
    # eigenvector of the largest eigenvalue points across the line; the line runs perpendicular
    across = 0.5 * np.arctan2(2 * ixy, ixx - iyy)  # angle of the across-direction from x
    weight = np.abs(np.cos(across))  # across-direction horizontal -> line vertical -> weight 1
    return ridge * weight


def crack_score(cell: np.ndarray, sigma: float = 1.5, border: int = 20) -> float:
    """Crack strength of a cell: the mean of the top 1 % of its `ridge_map` inside the cell (a `border`
    cut off), minus 0.5 x the fraction of pixels darker than half the median (large dark areas are
    dead regions or shading, not cracks)."""
    inner = ridge_map(cell, sigma)[border:-border, border:-border]
    top = np.sort(inner.ravel())[-max(1, inner.size // 100):]
    core = cell.astype(np.float64)[border:-border, border:-border]
    dark_fraction = float((core < 0.5 * np.median(core)).mean())
    return float(top.mean() - 0.5 * dark_fraction)


def crack_centre(cell: np.ndarray, window: int, sigma: float = 1.5, border: int = 20) -> tuple[int, int]:
    """(row, col) of the crack for window x window crops: the centre of the box of that size inside the cell with the
    highest mean `ridge_map`, zero within `border` of the edge as in `crack_score` (means to 1e-9; ties: first row-major)."""
    response = np.pad(ridge_map(cell, sigma)[border:-border, border:-border], border)  # zero at the border
    box_mean = ndimage.uniform_filter(response, window, mode="constant")  # box rows r - w//2 .. r + (w-1)//2
    half, (height, width) = window // 2, cell.shape
    inside = np.round(box_mean[half:height - window + half + 1, half:width - window + half + 1], 9)
    row, col = np.unravel_index(int(np.argmax(inside)), inside.shape)
    return int(row) + half, int(col) + half


def patch_corner(centre: tuple[int, int], side: int, shape: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of the side x side crop centred on `centre`, shifted to stay inside `shape`."""
    return tuple(int(np.clip(c - side // 2, 0, extent - side)) for c, extent in zip(centre, shape))


def select_elpv_cracks(count: int = 80, module_type: str = "mono", probability: float = 1.0):
    """The documented ELPV crack subset: (name, score) of the `count` best-scoring cells."""
    candidates = [name for name, prob, kind in elpv_labels() if prob == probability and kind == module_type]
    scored = [(name, crack_score(elpv_image(name))) for name in candidates]
    scored.sort(key=lambda item: (-round(item[1], 6), item[0]))
    return scored[:count]


def write_list(path: str | Path, header: str, rows) -> Path:
    """Write a committed list in data/: CSV with `header`, one line per row."""
    atomic_write_text(path, header + "\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return Path(path)


def _read_committed(path: str | Path | None, default: str, option: str) -> list[dict]:
    """The rows of a committed list in data/, or a DatasetError saying how to regenerate it."""
    path = Path(path) if path else project_root(Path(__file__).parent) / default
    if not path.is_file():
        raise DatasetError(f"The list {path} is missing; regenerate it with `python -m vae_overlay.data {option}`.")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def read_elpv_list(path: str | Path | None = None) -> list[str]:
    """Cell file names of the committed ELPV crack list, in rank order."""
    return [row["name"] for row in _read_committed(path, ELPV_LIST, "--write-elpv-list")]


def read_elpv_patches(side: int, path: str | Path | None = None) -> list[tuple[str, int, int]]:
    """(cell name, centre row, centre col) for side x side crops, from the committed crack-patch list."""
    rows = _read_committed(path, ELPV_PATCHES, "--write-elpv-patches")
    return [(row["name"], int(row["row"]), int(row["col"])) for row in rows if int(row["side"]) == side]


def load_elpv_cracks(size: int, names: list[str] | None = None) -> LoadedImages:
    """The committed list of 80 ELPV crack cells as LoadedImages at `size` px."""
    names = names or read_elpv_list()
    images = [square_resize(elpv_image(name), size) for name in names]
    return LoadedImages(_stack(images, size), list(names), source="elpv-cracks (elpv-dataset package)")


def load_elpv_patches(size: int) -> LoadedImages:
    """size x size crops of the listed cells at native resolution around their `crack_centre`, named
    `<cell>@r<top>c<left>`: the committed centres for PATCH_SIDES, computed on loading for other sizes."""
    if not 1 <= size <= ELPV_SIDE:
        raise DatasetError(f"IMAGE_SIZE {size} does not fit inside a {ELPV_SIDE} x {ELPV_SIDE} px ELPV cell: crack patches "
                           f"are cut at native resolution, without resampling; use a size from 1 to {ELPV_SIDE} (64 or 128).")
    cells = {name: elpv_image(name) for name in read_elpv_list()}
    centres = read_elpv_patches(size) if size in PATCH_SIDES else [(n, *crack_centre(c, size)) for n, c in cells.items()]
    corners = [(name, *patch_corner(centre, size, cells[name].shape)) for name, *centre in centres]
    images = [cells[name][top:top + size, left:left + size] for name, top, left in corners]
    names = [f"{Path(name).stem}@r{top}c{left}" for name, top, left in corners]
    return LoadedImages(_stack(images, size), names, source="elpv-crack-patches (elpv-dataset package)")


# --- dispatch and files ------------------------------------------------------------------------

def resolve_folder(dataset: str | Path) -> Path:
    """A folder path as given, or relative to the project root when it is not found as given."""
    path = Path(dataset).expanduser()
    if path.exists() or path.is_absolute():
        return path
    candidate = project_root() / path
    return candidate if candidate.exists() else path


def load_source(dataset: str, size: int, seed: int = 42, synthetic_count: int = 80) -> LoadedImages:
    """DATASET ("elpv-cracks", "elpv-crack-patches", "synthetic", or a folder) -> LoadedImages at `size` px."""
    if dataset == "elpv-cracks":
        return load_elpv_cracks(size)
    if dataset == "elpv-crack-patches":
        return load_elpv_patches(size)
    if dataset == "synthetic":
        from vae_overlay import synth

        images, _, kinds = synth.make_dataset(synthetic_count, size=size, seed=seed, kinds=("crack",), crack_fraction=1.0)
        names = [f"synthetic_{kind}_{i:03d}" for i, kind in enumerate(kinds)]
        return LoadedImages(images.astype(np.float32), names, source=f"synthetic (seed {seed})")
    return load_folder(resolve_folder(dataset), size)


def check_images(images):
    """`images` as float32 (n, size, size, 1) in [0, 1], or a clear error; streams pass as they are."""
    if not isinstance(images, np.ndarray) and hasattr(images, "batches"):
        return images  # a stream.ImageStream: decoded by data.load_image, finite, in [0, 1], never empty
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 1 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape (n, size, size, 1), got {images.shape}: "
                         "load them with vae_overlay.data.load_dataset (notebook 01 writes them).")
    if len(images) == 0:
        raise ValueError("images is empty: the dataset holds no image; re-run notebook 01.")
    images = images.astype(np.float32, copy=False)
    bad = ~np.isfinite(images)
    if bad.any():
        count = int(bad.reshape(len(images), -1).any(axis=1).sum())
        raise ValueError(f"images hold {int(bad.sum())} NaN/infinite pixels in {count} images: "
                         "re-create the dataset with notebook 01.")
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"pixel values must lie in [0, 1] for the cross-entropy loss, got "
                         f"[{images.min():.3g}, {images.max():.3g}]: divide 8-bit images by 255.")
    return images


def save_dataset(path: str | Path, loaded: LoadedImages) -> Path:
    """Write images and names to a .npz file atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=loaded.images.astype(np.float32), names=np.array(loaded.names, dtype=str))
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def load_dataset(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """A dataset.npz written by notebook 01 -> (images, names); says what to run if missing."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} not found: run notebooks/01_prepare_dataset.ipynb first with "
                                "the same DATASET and ARTIFACTS_DIR.")
    with np.load(path, allow_pickle=False) as data:
        return data["images"].astype(np.float32), [str(n) for n in data["names"]]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Rebuild the committed ELPV lists from the elpv-dataset package.")
    parser.add_argument("--write-elpv-list", action="store_true", help=f"recompute {ELPV_LIST}")
    parser.add_argument("--write-elpv-patches", action="store_true", help=f"recompute {ELPV_PATCHES} (cells of {ELPV_LIST})")
    parser.add_argument("--count", type=int, default=80)
    args = parser.parse_args()
    if args.write_elpv_list:
        rows = [(rank, name, f"{score:.6f}") for rank, (name, score) in enumerate(select_elpv_cracks(args.count), 1)]
        print("wrote", write_list(project_root() / ELPV_LIST, "rank,name,score", rows))
    if args.write_elpv_patches:
        rows = [(rank, name, *crack_centre(elpv_image(name), side), side)
                for side in PATCH_SIDES for rank, name in enumerate(read_elpv_list(), 1)]
        print("wrote", write_list(project_root() / ELPV_PATCHES, "rank,name,row,col,side", rows))
