"""Image folders -> arrays, and the prepared-dataset files (the data-source dispatch over these, the
ELPV sources and the synthetic one is `vae_overlay.datasets`).

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

import io
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vae_overlay.runs import atomic_write_bytes

DEFAULT_MAX_PIXELS = 64_000_000  # a 8000 x 8000 photo loads; a 100k x 100k bomb does not


class DatasetError(ValueError):
    """A dataset folder or file that cannot be used, with what to do about it."""


class DatasetMissing(FileNotFoundError):
    """No prepared dataset file where one was expected (`config.advised` names the notebook)."""


class ImagesUnusable(DatasetError):
    """Images that cannot be trained on (shape, NaN, range), with the facts (`config.advised` adds
    what to do in the notebooks)."""


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
        lines = [
            f"{self.source}: loaded {len(self.names)} image(s), skipped {len(self.skipped)},"
            f" ignored {len(self.ignored)}"
        ]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        lines += [f"  ignored {name}: {reason}" for name, reason in self.ignored]
        return "\n".join(lines)


def project_root(start: str | Path | None = None) -> Path:
    """The repository root: the nearest folder upwards from `start` (the working directory) that
    holds this project's pyproject.toml and src/vae_overlay, else the one this package is in.
    Another project's pyproject.toml above a notebook (a copy of it in /tmp, say) is passed
    over."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "src" / "vae_overlay").is_dir():
            return folder
    return Path(__file__).resolve().parents[2]


def _to_unit_float(image: Image.Image) -> np.ndarray:
    """A Pillow image of any mode -> 2-D float32 grayscale in [0, 1]."""
    mode = image.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return (
            np.asarray(Image.alpha_composite(white, image.convert("RGBA")).convert("L"), np.float32)
            / 255.0
        )
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


def as_uint8(image) -> np.ndarray:
    """The project's one float -> 8-bit rule: uint8 stays as it is; floats in [0, 1] are clipped,
    scaled to 0..255 and rounded (in float64, so a float32 and a float64 copy of one image give the
    same grey levels)."""
    image = np.asarray(image)
    return (
        image
        if image.dtype == np.uint8
        else np.round(np.clip(image.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    )


def squared_distances(a, b) -> np.ndarray:
    """Squared euclidean distances (n, m) between the rows of a (n, p) and of b (m, p), in their
    dtype, by one matrix product (|a|² + |b|² - 2 a·b: it may dip just below 0 by rounding)."""
    return (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T


def as_unit_float(image) -> np.ndarray:
    """The inverse convention: uint8 grey levels -> float32 in [0, 1]; floats pass as float32."""
    image = np.asarray(image)
    return image / np.float32(255) if image.dtype == np.uint8 else image.astype(np.float32)


def square_resize(array: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop a 2-D array to a square, then resize it to size x size (Lanczos)."""
    height, width = array.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = array[top : top + side, left : left + side]
    if side != size:
        square = np.asarray(
            Image.fromarray(np.ascontiguousarray(square, dtype=np.float32)).resize(
                (size, size), Image.Resampling.LANCZOS
            )
        )
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
                    raise ImageSkipped(
                        f"declared size {width}x{height} exceeds the limit of {max_pixels:,} pixels"
                        " (possible decompression bomb); not decoded"
                    )
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
        raise ImageSkipped(
            f"refused as a possible decompression bomb, not decoded ({error})"
        ) from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        EOFError,
        MemoryError,
        ZeroDivisionError,
        OverflowError,
        struct.error,
    ) as error:
        reason = str(error) or type(error).__name__
        raise ImageSkipped(
            f"truncated or corrupt image data ({type(error).__name__}: {reason})"
        ) from None
    if not np.isfinite(array).all():
        raise ImageSkipped("image holds non-finite values")
    return square_resize(array, size)


def list_folder(folder: str | Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """(candidate image files sorted by name, ignored entries with reasons); a missing folder is an
    error."""
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(
            f"Image folder {folder} does not exist. Put your images (PNG, JPEG, TIFF, "
            "BMP, GIF) in a folder such as data/<name>/ and set DATASET to its path."
        )
    if not folder.is_dir():
        raise DatasetError(
            f"{folder} is a file, not a folder. Set DATASET to the folder that holds your images."
        )
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
    return DatasetError(
        f"No usable image in {folder}: expected image files (PNG, JPEG, TIFF, BMP, "
        f"GIF) directly inside it. Found: {detail}"
    )


def load_folder(
    folder: str | Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> LoadedImages:
    """Every usable image in `folder` (not sub-folders) -> LoadedImages, with a skip report."""
    files, ignored = list_folder(folder)
    images, names, skipped = [], [], []
    for entry in files:
        try:
            images.append(load_image(entry, size, max_pixels))
            names.append(entry.name)
        except ImageSkipped as reason:
            skipped.append((entry.name, str(reason)))
    loaded = LoadedImages(stack_images(images, size), names, skipped, ignored, source=str(folder))
    if not names:
        raise no_usable_image(folder, loaded.report(), empty=not skipped and not ignored)
    return loaded


def stack_images(images: list[np.ndarray], size: int) -> np.ndarray:
    """List of (size, size) arrays -> (n, size, size, 1) float32."""
    return (
        np.stack(images)[..., None].astype(np.float32)
        if images
        else np.zeros((0, size, size, 1), np.float32)
    )


# --- folders and files ------------------------------------------------------------------------


def resolve_folder(dataset: str | Path) -> Path:
    """A folder path as given, or relative to the project root when it is not found as given."""
    path = Path(dataset).expanduser()
    if path.exists() or path.is_absolute():
        return path
    candidate = project_root() / path
    return candidate if candidate.exists() else path


def check_images(images):
    """`images` as float32 (n, size, size, 1) in [0, 1], or a clear error; streams pass as they
    are."""
    if not isinstance(images, np.ndarray) and hasattr(images, "batches"):
        # a stream.ImageStream: decoded by data.load_image, finite, in [0, 1], never empty
        return images
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 1 or images.shape[1] != images.shape[2]:
        raise ImagesUnusable(
            f"images must have shape (n, size, size, 1), got {images.shape}: "
            "load them with vae_overlay.data.load_dataset."
        )
    if len(images) == 0:
        raise ImagesUnusable("images is empty: the dataset holds no image.")
    images = images.astype(np.float32, copy=False)
    bad = ~np.isfinite(images)
    if bad.any():
        count = int(bad.reshape(len(images), -1).any(axis=1).sum())
        raise ImagesUnusable(
            f"images hold {int(bad.sum())} NaN/infinite pixels in {count} images: "
            "the dataset must be made again."
        )
    if images.min() < 0 or images.max() > 1:
        low, high = images.min(), images.max()
        raise ImagesUnusable(
            "pixel values must lie in [0, 1] for the cross-entropy loss, got "
            f"[{low:.3g}, {high:.3g}]: divide 8-bit images by 255."
        )
    return images


def save_dataset(path: str | Path, loaded: LoadedImages) -> Path:
    """Write images and names to a .npz file atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, images=loaded.images.astype(np.float32), names=np.array(loaded.names, dtype=str)
    )
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def load_dataset(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """A dataset.npz written by `save_dataset` (notebook 01) -> (images, names); DatasetMissing if
    there is none."""
    if not Path(path).is_file():
        raise DatasetMissing(
            f"{path} not found: no prepared dataset there (data.save_dataset writes one)."
        )
    with np.load(path, allow_pickle=False) as data:
        return data["images"].astype(np.float32), [str(n) for n in data["names"]]
