"""Latent-space tools: the paper's sampling grid, batched decoding, summaries of a sweep, straight
paths."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from vae_overlay import paper
from vae_overlay.data import as_unit_float, squared_distances

# the display option "stretched": each image to its own 1-99 % range
STRETCH_PERCENTILES = (1.0, 99.0)


def contrast_stretch(image, percentiles=STRETCH_PERCENTILES) -> np.ndarray:
    """A display option, not the model's output: `image` (floats in [0, 1], or uint8) rescaled so
    that its own low and high percentiles map to 0 and 1 (clipped), as float32. At the paper's
    settings the decodes span about half the training images' value range, so cracks that are there
    look like grey blur until stretched. A flat image (no spread between the percentiles) comes back
    unchanged."""
    image = as_unit_float(image)
    low, high = np.percentile(image, percentiles)
    if high - low < 1e-6:
        return image
    return np.clip((image - low) / (high - low), 0.0, 1.0).astype(np.float32)


def shown_tiles(tiles, stretch: bool) -> tuple[np.ndarray, str]:
    """Decoded tiles (..., h, w) as a figure shows them, and the label that says how: each tile
    stretched on its own (`contrast_stretch`, the explorer's default display) or as decoded."""
    if not stretch:
        return np.asarray(tiles), "as decoded"
    flat = np.asarray(tiles).reshape(-1, *np.shape(tiles)[-2:])
    stretched = np.stack([contrast_stretch(tile) for tile in flat]).reshape(np.shape(tiles))
    low, high = STRETCH_PERCENTILES
    return stretched, f"each tile stretched to its own {low:g}–{high:g} % range"


def axis_values(value_range, step: float) -> np.ndarray:
    """Values from low to high inclusive at `step`, counted by rounding (no float accumulation)."""
    low, high = float(value_range[0]), float(value_range[1])
    if step <= 0 or high < low:
        raise ValueError(f"need step > 0 and low <= high, got range {value_range} and step {step}")
    count = int(round((high - low) / step)) + 1
    if abs(low + (count - 1) * step - high) > 1e-6 * max(1.0, abs(step)):
        raise ValueError(f"range {value_range} is not a whole number of steps of {step}")
    return np.linspace(low, high, count)


def latent_grid(z1_range=paper.Z1_RANGE, z2_range=paper.Z2_RANGE, step: float = paper.STEP):
    """Grid over a 2-D latent region: (z1_values, z2_values, points), points[i * n2 + j] = (z1[i],
    z2[j])."""
    z1_values = axis_values(z1_range, step)
    z2_values = axis_values(z2_range, step)
    z1_mesh, z2_mesh = np.meshgrid(z1_values, z2_values, indexing="ij")
    points = np.stack([z1_mesh.ravel(), z2_mesh.ravel()], axis=1).astype(np.float32)
    return z1_values, z2_values, points


def _latent_dim(model) -> int:
    return int(model.inputs[0].shape[-1])


# decoder -> {uint8: call}, so repeated calls do not retrace
_COMPILED = weakref.WeakKeyDictionary()


def compiled_decoder(decoder, uint8: bool = False):
    """A `tf.function` decoder call on a (n, d) float32 batch; returns a numpy array (float or
    uint8).

    One traced function per decoder and output type is kept and reused (any batch size, no
    retracing).
    """
    cached = _COMPILED.setdefault(decoder, {})
    if uint8 in cached:
        return cached[uint8]
    signature = [tf.TensorSpec([None, _latent_dim(decoder)], tf.float32)]
    model_ref = weakref.ref(decoder)  # the cache must not keep the decoder alive

    if uint8:

        @tf.function(input_signature=signature)
        def decode(z):
            images = model_ref()(z, training=False)
            return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)

    else:

        @tf.function(input_signature=signature)
        def decode(z):
            return model_ref()(z, training=False)

    def call(z) -> np.ndarray:
        z = np.asarray(z, dtype=np.float32)
        if z.ndim == 1:
            z = z[None, :]
        return decode(tf.constant(z)).numpy()

    call.graph_function = decode  # the traced function, for benchmarks that time the graph alone
    cached[uint8] = call
    return call


def decode_batched(decoder, z, batch_size: int = 1024, out=None, progress=None, dtype=np.uint8):
    """Decode latent points z (n, d), or one point (d,), to images (n, s, s, 1), one compiled call
    per batch: the one batched decode path.

    `dtype`: np.uint8 (the default: rounded grey levels, for sweeps and figures) or np.float32 (the
    decoder's values in (0, 1), for measurements such as the overlays' fidelity). `out`: None (a new
    array), a preallocated array or np.memmap of that shape and dtype, or a file path (a .npy memmap
    is created there, so the images never have to fit in memory as float32). `progress`: None/False,
    True (a `tqdm.auto` bar: a widget in a notebook, a line in a terminal), or a callable(done,
    total) called after every batch.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.float32):
        raise ValueError(f"dtype must be np.uint8 or np.float32, got {dtype}")
    z = np.atleast_2d(np.asarray(z, dtype=np.float32))
    if z.ndim != 2 or z.shape[1] != _latent_dim(decoder):
        raise ValueError(f"z must have shape (n, {_latent_dim(decoder)}), got {z.shape}")
    shape = (len(z), *(int(size) for size in decoder.outputs[0].shape[1:]))
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif isinstance(out, (str, Path)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        out = np.lib.format.open_memmap(out, mode="w+", dtype=dtype, shape=shape)
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(f"out must be {dtype} with shape {shape}, got {out.dtype} {out.shape}")
    decode = compiled_decoder(decoder, uint8=dtype == np.uint8)
    # At most one update a second: each is a widget message, and a flood of them can crowd out a
    # notebook's output.
    with tqdm(
        total=len(z), desc="decoding", unit="image", disable=progress is not True, mininterval=1.0
    ) as bar:
        for begin in range(0, len(z), batch_size):
            end = min(begin + batch_size, len(z))
            out[begin:end] = decode(z[begin:end])
            bar.update(end - begin)
            if callable(progress):
                progress(end, len(z))
    if isinstance(out, np.memmap):
        out.flush()
    return out


def sweep_summary(sweep, grid_shape, chunk_size: int = 4096) -> dict:
    """What a decoded grid sweep (n1 * n2, s, s, 1) uint8 holds, read in chunks (it may be a
    memmap).

    Images are in grid order (`latent_grid`: image i * n2 + j at (z1[i], z2[j])); pixels are scaled
    to [0, 1]. Returns {"pixel_mean": (s, s), "pixel_std": (s, s), "change": (n1 - 1, n2 - 1)},
    where change[i, j] is the hypotenuse of the mean absolute pixel change from grid point (i, j) to
    (i + 1, j) and to (i, j + 1).
    """
    n1, n2 = grid_shape
    if len(sweep) != n1 * n2:
        raise ValueError(f"a {n1} x {n2} grid needs {n1 * n2} images, got {len(sweep)}")
    flat = sweep.reshape(len(sweep), -1)
    total = np.zeros(flat.shape[1])
    total_squares = np.zeros(flat.shape[1])
    for begin in range(0, len(flat), chunk_size):
        chunk = flat[begin : begin + chunk_size].astype(np.float64) / 255
        total += chunk.sum(axis=0)
        total_squares += (chunk**2).sum(axis=0)
    pixel_mean = total / len(flat)
    pixel_std = np.sqrt(np.maximum(total_squares / len(flat) - pixel_mean**2, 0))
    by_row = sweep.reshape(n1, n2, -1)  # [i, j] is the image at (z1[i], z2[j])
    change = np.zeros((n1 - 1, n2 - 1))
    for i in range(n1 - 1):
        here = by_row[i].astype(np.int16)
        right = np.abs(by_row[i + 1, :-1].astype(np.int16) - here[:-1]).mean(axis=1)  # z1 + step
        up = np.abs(here[1:] - here[:-1]).mean(axis=1)  # z2 + step
        change[i] = np.hypot(right, up) / 255
    image_shape = sweep.shape[1:3]
    return {
        "pixel_mean": pixel_mean.reshape(image_shape),
        "pixel_std": pixel_std.reshape(image_shape),
        "change": change,
    }


def nearest_in_sweep(sweep, images, chunk_size: int = 8192):
    """For each image (m, s, s, 1) in [0, 1], the sweep image (uint8, maybe a memmap) closest in
    pixel space.

    Returns (index into the sweep, RMS pixel error in [0, 1]); the sweep is read in chunks of
    `chunk_size`.
    """
    targets = np.asarray(images).reshape(len(images), -1).astype(np.float32)
    flat = sweep.reshape(len(sweep), -1)
    if flat.shape[1] != targets.shape[1]:
        raise ValueError(f"sweep images have {flat.shape[1]} pixels, the images {targets.shape[1]}")
    best_distance = np.full(len(targets), np.inf)
    best_index = np.zeros(len(targets), dtype=int)
    rows = np.arange(len(targets))
    for begin in range(0, len(flat), chunk_size):
        chunk = flat[begin : begin + chunk_size].astype(np.float32) / 255
        squared = squared_distances(targets, chunk)  # one matrix product per chunk
        k = squared.argmin(axis=1)
        better = squared[rows, k] < best_distance
        best_distance[better] = squared[rows, k][better]
        best_index[better] = begin + k[better]
    return best_index, np.sqrt(np.maximum(best_distance, 0) / targets.shape[1])


def interpolate(z_a, z_b, n: int = 12) -> np.ndarray:
    """n evenly spaced points on the straight line from z_a to z_b, both endpoints included."""
    z_a = np.asarray(z_a, dtype=np.float32)
    z_b = np.asarray(z_b, dtype=np.float32)
    if n < 2:
        raise ValueError(f"need n >= 2 points on a path, got {n}")
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
    path = (1.0 - t) * z_a[None, :] + t * z_b[None, :]
    path[0], path[-1] = z_a, z_b  # exact endpoints, whatever the rounding in between
    return path


def step_changes(images) -> np.ndarray:
    """Mean absolute pixel change between consecutive images of a sequence (n - 1 values)."""
    images = np.asarray(images, dtype=np.float64)
    if len(images) < 2:
        raise ValueError("need at least two images to measure a change")
    differences = np.abs(np.diff(images, axis=0))
    return differences.reshape(len(images) - 1, -1).mean(axis=1)


def smoothness(images) -> float:
    """Largest step-to-step mean absolute pixel change over the mean step (1.0 = perfectly even).

    A sequence that does not change at all has no uneven step: it returns 1.0.
    """
    changes = step_changes(images)
    mean_change = changes.mean()
    if mean_change == 0:
        return 1.0
    return float(changes.max() / mean_change)
