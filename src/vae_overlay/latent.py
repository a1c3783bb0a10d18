"""Latent-space tools: encode means, the paper's sampling grid, batched decoding, straight paths."""
from __future__ import annotations

import sys
import time
import weakref
from pathlib import Path

import numpy as np
import tensorflow as tf

from vae_overlay import model

encode_means = model.encode_mean  # notebooks 03/04 call it by this name; one implementation

# Section 3 of the paper: z1 in [-15, 15], z2 in [-10, 10], moving in increments of 0.1.
PAPER_Z1_RANGE = (-15.0, 15.0)
PAPER_Z2_RANGE = (-10.0, 10.0)
PAPER_STEP = 0.1


def axis_values(value_range, step: float) -> np.ndarray:
    """Values from low to high inclusive at `step`, counted by rounding (no float accumulation)."""
    low, high = float(value_range[0]), float(value_range[1])
    if step <= 0 or high < low:
        raise ValueError(f"need step > 0 and low <= high, got range {value_range} and step {step}")
    count = int(round((high - low) / step)) + 1
    if abs(low + (count - 1) * step - high) > 1e-6 * max(1.0, abs(step)):
        raise ValueError(f"range {value_range} is not a whole number of steps of {step}")
    return np.linspace(low, high, count)


def latent_grid(z1_range=PAPER_Z1_RANGE, z2_range=PAPER_Z2_RANGE, step: float = PAPER_STEP):
    """Grid over a 2-D latent region: (z1_values, z2_values, points), points[i * n2 + j] = (z1[i], z2[j])."""
    z1_values = axis_values(z1_range, step)
    z2_values = axis_values(z2_range, step)
    z1_mesh, z2_mesh = np.meshgrid(z1_values, z2_values, indexing="ij")
    points = np.stack([z1_mesh.ravel(), z2_mesh.ravel()], axis=1).astype(np.float32)
    return z1_values, z2_values, points


def _latent_dim(model) -> int:
    return int(model.inputs[0].shape[-1])


_COMPILED = weakref.WeakKeyDictionary()  # decoder -> {uint8: call}, so repeated calls do not retrace


def compiled_decoder(decoder, uint8: bool = False):
    """A `tf.function` decoder call on a (n, d) float32 batch; returns a numpy array (float or uint8).

    One traced function per decoder and output type is kept and reused (any batch size, no retracing).
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


def _progress_printer(total: int, start: float):
    """A progress callback that prints one updating line at every ~5% and at the end."""
    shown = {"next": 0}

    def report(done: int, total_: int = total) -> None:
        if done >= shown["next"] or done == total_:
            elapsed = time.perf_counter() - start
            rate = done / elapsed if elapsed > 0 else float("nan")
            end = "\n" if done == total_ else ""
            sys.stdout.write(f"\rdecoded {done:,}/{total_:,} ({100 * done / total_:5.1f}%) "
                             f"{elapsed:6.1f} s, {rate:,.0f} images/s{end}")
            sys.stdout.flush()
            shown["next"] = done + max(1, total_ // 20)

    return report


def decode_batched(decoder, z, batch_size: int = 1024, out=None, progress=None):
    """Decode latent points z (n, d) to uint8 images (n, s, s, 1), one compiled call per batch.

    `out`: None (a new array), a preallocated uint8 array or np.memmap of that shape, or a file path
    (a .npy memmap is created there, so the images never have to fit in memory as float32).
    `progress`: None/False, True (one updating line), or a callable(done, total).
    """
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != _latent_dim(decoder):
        raise ValueError(f"z must have shape (n, {_latent_dim(decoder)}), got {z.shape}")
    shape = (len(z), *(int(size) for size in decoder.outputs[0].shape[1:]))
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif isinstance(out, (str, Path)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        out = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=shape)
    if out.shape != shape or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 with shape {shape}, got {out.dtype} {out.shape}")
    decode = compiled_decoder(decoder, uint8=True)
    if progress is True:
        progress = _progress_printer(len(z), time.perf_counter())
    for begin in range(0, len(z), batch_size):
        end = min(begin + batch_size, len(z))
        out[begin:end] = decode(z[begin:end])
        if progress:
            progress(end, len(z))
    if isinstance(out, np.memmap):
        out.flush()
    return out


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


def grid_index(z, z1_range=PAPER_Z1_RANGE, z2_range=PAPER_Z2_RANGE, step: float = PAPER_STEP) -> np.ndarray:
    """Flat index into `latent_grid(...)` points of the grid point nearest to each z (m, 2), clipped to the grid."""
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    z1_values = axis_values(z1_range, step)
    z2_values = axis_values(z2_range, step)
    i = np.clip(np.round((z[:, 0] - z1_values[0]) / step).astype(int), 0, len(z1_values) - 1)
    j = np.clip(np.round((z[:, 1] - z2_values[0]) / step).astype(int), 0, len(z2_values) - 1)
    return i * len(z2_values) + j


def nearest_points(points, queries) -> np.ndarray:
    """Index of the nearest of `points` (n, d) for each query (m, d), by Euclidean distance."""
    points = np.asarray(points, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    distances = ((queries[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
    return distances.argmin(axis=1)
