"""Image folders larger than memory: decoded once through tf.data into a disk cache, then streamed.

``ImageStream(folder, size, cache_dir)`` lists the folder with the loader's rules
(``data.list_folder``), decodes and resizes every file with the loader's own ``data.load_image`` in
a parallel ``tf.data`` map, and appends the float32 pixels to ``cache_dir/images-<key>.f32`` in
chunks. A crash during that pass loses at most one chunk: the next call resumes after the last
complete one. The cache key covers the file names, sizes and modification times, the image size and
the pixel limit, so a changed folder is decoded again and an unchanged one never is. Training then
reads each minibatch's rows from the cache (``os.pread``, nothing memory-mapped, so resident memory
stays at a few batches whatever the folder's size) in a ``tf.data`` pipeline with prefetching:
``batches(index_batches)``.

The pixels, their order and their fingerprint are those ``data.load_folder`` gives, so ``train_vae``
on a stream trains exactly as on the in-memory array (tested: identical weights). ``open_images(...,
streaming="auto")`` picks the in-memory path when the decoded images fit in a quarter of the
available memory and the stream otherwise; ``streaming=True`` / ``False`` forces either.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from vae_overlay import data
from vae_overlay.runs import atomic_write_text, check_writable, fingerprint

CHUNK_FILES = 2048  # files decoded between two progress saves of the cache
LOADER_VERSION = 1  # bump when data.load_image changes what it returns: old caches are then rebuilt


class ImageStream:
    """The usable images of `folder` at `size` px, kept on disk; reads rows on demand (see the
    module doc)."""

    def __init__(
        self,
        folder,
        size: int,
        cache_dir,
        max_pixels: int = data.DEFAULT_MAX_PIXELS,
        verbose: int = 1,
        chunk_files: int = CHUNK_FILES,
    ):
        self.folder = Path(folder)
        self.image_size = int(size)
        files, self.ignored = data.list_folder(self.folder)
        self._row_bytes = self.image_size * self.image_size * 4
        key = _cache_key(files, self.image_size, max_pixels)
        cache_dir = Path(cache_dir)
        self.cache_path = cache_dir / f"images-{key}.f32"
        meta_path = cache_dir / f"images-{key}.json"
        say = print if verbose else (lambda *args, **kwargs: None)
        if not meta_path.exists():
            # Room for the whole cache is checked before decoding, not when a finished cache is
            # reopened.
            check_writable(cache_dir, need_bytes=len(files) * self._row_bytes + 10_000_000)
            _build_cache(
                files, self.image_size, max_pixels, self.cache_path, meta_path, chunk_files, say
            )
            for old in cache_dir.glob("images-*"):  # caches of earlier folder contents
                if old.name not in (self.cache_path.name, meta_path.name):
                    old.unlink(missing_ok=True)
        meta = json.loads(meta_path.read_text())
        self.names, self.skipped, self.sha256 = (
            meta["names"],
            [tuple(s) for s in meta["skipped"]],
            meta["sha256"],
        )
        if (
            not self.cache_path.is_file()
            or self.cache_path.stat().st_size != len(self.names) * self._row_bytes
        ):
            meta_path.unlink(missing_ok=True)
            raise data.DatasetError(
                f"The image cache {self.cache_path} is missing or incomplete: it has been "
                "reset; run again to decode the folder anew."
            )
        if not self.names:
            raise data.no_usable_image(
                self.folder, self.report(), empty=not self.skipped and not self.ignored
            )
        self._fd = os.open(self.cache_path, os.O_RDONLY)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.names), self.image_size, self.image_size, 1)

    def report(self) -> str:
        return data.LoadedImages(
            np.zeros((0, 1, 1, 1)),
            self.names,
            self.skipped,
            self.ignored,
            source=f"{self.folder} (streamed from {self.cache_path.name})",
        ).report()

    def read(self, index) -> np.ndarray:
        """Images at `index` (1-D integer array, any order, repeats allowed) -> (k, size, size, 1)
        float32."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"image index outside [0, {len(self)})")
        rows = [os.pread(self._fd, self._row_bytes, int(i) * self._row_bytes) for i in index]
        flat = np.frombuffer(b"".join(rows), dtype=np.float32)
        return flat.reshape(len(index), self.image_size, self.image_size, 1).copy()

    def __getitem__(self, item) -> np.ndarray:
        if isinstance(item, slice):
            return self.read(np.arange(len(self))[item])
        return self.read(np.atleast_1d(item))[0] if np.ndim(item) == 0 else self.read(item)

    def batches(self, index_batches) -> tf.data.Dataset:
        """A tf.data pipeline yielding the float32 images of each index batch, read in parallel,
        prefetched."""
        return batch_dataset(self.read, index_batches, self.image_size)

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    __del__ = close


def batch_dataset(read, index_batches, image_size: int) -> tf.data.Dataset:
    """tf.data pipeline of `read(index)` for each index batch, in order, reads overlapping with
    training."""
    index_batches = [np.asarray(batch, np.int64) for batch in index_batches]

    def read_batch(number):
        return read(index_batches[int(number)])

    def load(number):
        images = tf.numpy_function(read_batch, [number], tf.float32, name="read_images")
        return tf.ensure_shape(images, [None, image_size, image_size, 1])

    return (
        tf.data.Dataset.range(len(index_batches))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable), or total memory where
    unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def open_images(
    folder, size: int, cache_dir, streaming="auto", memory_fraction: float = 0.25, verbose: int = 1
):
    """The images of `folder`: an in-memory array (data.LoadedImages) or an ImageStream.

    `streaming="auto"` streams when the decoded float32 images (files x size^2 x 4 bytes, counting
    every candidate file) would take more than `memory_fraction` of the available memory; True or
    False force a path. Both can be passed to model.train_vae as they are (`.images` for the array)
    and train identically.
    """
    if streaming not in ("auto", True, False):
        raise ValueError(f"streaming must be 'auto', True or False, got {streaming!r}")
    if streaming == "auto":
        files, _ = data.list_folder(folder)
        need, available = len(files) * size * size * 4, available_memory()
        streaming = need > memory_fraction * available
        if verbose:
            print(
                f"{len(files)} files x {size}x{size} px float32 = {need / 1e9:.2f} GB; "
                f"{'streaming from a disk cache' if streaming else 'loading into memory'} "
                f"(threshold {memory_fraction:.0%} of {available / 1e9:.1f} GB available)"
            )
    if streaming:
        return ImageStream(folder, size, cache_dir, verbose=verbose)
    return data.load_folder(folder, size)


# ----------------------------------------------------------------------------- the cache


def _cache_key(files, size: int, max_pixels: int) -> str:
    listing = [[path.name, path.stat().st_size, path.stat().st_mtime_ns] for path in files]
    return fingerprint(
        {"loader": LOADER_VERSION, "size": size, "max_pixels": max_pixels, "files": listing}
    )


def decode_files(paths: list[str], size: int, max_pixels: int) -> tf.data.Dataset:
    """(pixels, skip reason) per file, decoded by data.load_image in parallel, in file order."""

    def decode(path):
        try:
            return data.load_image(os.fsdecode(path), size, max_pixels), b""
        except data.ImageSkipped as reason:
            return np.zeros((size, size), np.float32), str(reason).encode("utf-8")

    def load(path):
        pixels, reason = tf.numpy_function(
            decode, [path], [tf.float32, tf.string], name="decode_image"
        )
        return tf.ensure_shape(pixels, [size, size]), tf.ensure_shape(reason, [])

    return (
        tf.data.Dataset.from_tensor_slices(tf.constant(paths, dtype=tf.string))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def _build_cache(
    files, size, max_pixels, cache_path: Path, meta_path: Path, chunk_files: int, say
) -> None:
    """Decode every file into cache_path, resuming a partial pass; meta_path is written last."""
    partial_path = cache_path.with_suffix(".partial")
    progress_path = cache_path.with_suffix(".progress.json")
    row_bytes = size * size * 4
    progress = {"files_done": 0, "names": [], "skipped": []}
    if progress_path.exists() and partial_path.exists():
        progress = json.loads(progress_path.read_text())
        say(f"Resuming the image cache after {progress['files_done']} of {len(files)} files.")
    with open(partial_path, "r+b" if partial_path.exists() else "wb") as out:
        # drop rows written after the last progress save
        out.truncate(len(progress["names"]) * row_bytes)
        out.seek(0, os.SEEK_END)
        started, done_at_start = time.perf_counter(), progress["files_done"]
        for start in range(progress["files_done"], len(files), chunk_files):
            chunk = files[start : start + chunk_files]
            paths = [os.fsencode(path) for path in chunk]
            for path, (pixels, reason) in zip(
                chunk, decode_files(paths, size, max_pixels).as_numpy_iterator()
            ):
                if reason:
                    progress["skipped"].append((path.name, reason.decode("utf-8")))
                else:
                    out.write(np.ascontiguousarray(pixels, np.float32).tobytes())
                    progress["names"].append(path.name)
            out.flush()
            os.fsync(out.fileno())
            progress["files_done"] = start + len(chunk)
            atomic_write_text(progress_path, json.dumps(progress))
            rate = (progress["files_done"] - done_at_start) / (time.perf_counter() - started)
            say(
                f"decoded {progress['files_done']}/{len(files)} files ({rate:.0f} files/s, "
                f"{(len(files) - progress['files_done']) / rate / 60:.1f} min left)",
                flush=True,
            )
    # The fingerprint train_vae's in-memory path computes: sha256 of the float32 array's bytes.
    with open(partial_path, "rb") as cached:
        sha256 = fingerprint(iter(lambda: cached.read(1 << 24), b""))
    os.replace(partial_path, cache_path)
    atomic_write_text(
        meta_path,
        json.dumps(
            {
                "names": progress["names"],
                "skipped": progress["skipped"],
                "sha256": sha256,
                "image_size": size,
            }
        ),
    )
    progress_path.unlink(missing_ok=True)
