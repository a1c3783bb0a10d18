"""Run folders and their files: atomic writes, the one fingerprint, settings checks, disk checks.

Every module that writes a file a crash must not corrupt (datasets, checkpoints, models, histories,
study tables) writes it through `atomic_write_bytes` / `atomic_write_text` / `atomic_path`: the data
go to a temporary file in the same folder, are fsynced, then renamed over the target, so a reader
sees the old file or the new one, never half of one. `fingerprint` is the one content hash of the
project (images, settings); `check_same_settings` is the one rule for reusing a finished run: same
settings, or a `RunMismatch` that names every difference.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np


class RunMismatch(ValueError):
    """A run folder holds results made with other settings or data."""


class DiskError(ValueError):
    """A folder that cannot take the files a step is about to write, with what to do about it."""


class NonFiniteState(ValueError):
    """Weights or optimizer variables holding NaN or infinity, refused on writing and on loading."""


def check_finite(named_arrays, path, what: str, hint: str) -> None:
    """Raise NonFiniteState naming `path` and the arrays among `named_arrays` ((name, array) pairs)
    that hold a NaN or an infinity; `what` says what was being done ("refusing to write", ...),
    `hint` what to do."""
    bad = [
        name
        for name, array in named_arrays
        if np.issubdtype(np.asarray(array).dtype, np.floating) and not np.isfinite(array).all()
    ]
    if bad:
        shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
        raise NonFiniteState(
            f"{path}: {what}: {len(bad)} of its arrays hold NaN or infinite values ({shown}). "
            f"{hint}"
        )


def fingerprint(value) -> str:
    """16 hex digits of SHA-256: of an array's bytes (C order), of bytes, of an iterator of byte
    blocks (a file read in pieces hashes as the array it holds), or of a JSON-able value (keys
    sorted)."""
    digest = hashlib.sha256()
    if isinstance(value, np.ndarray):
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, bytes):
        digest.update(value)
    elif hasattr(value, "__next__"):
        for block in value:
            digest.update(block)
    else:
        digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def seed_everything(seed: int | None = None, deterministic: bool = False) -> None:
    """The one way a run is seeded, so that the same seed gives the same weights: with a `seed`,
    Python's, NumPy's and the backend's random generators (`keras.utils.set_random_seed`); with
    `deterministic`, TensorFlow's deterministic kernels for the rest of the process (same seed on
    CPU -> same weights)."""
    if seed is not None:
        import keras

        keras.utils.set_random_seed(seed)
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def check_same_settings(found: dict, wanted: dict, source, hint: str = "set retrain=True") -> None:
    """Raise RunMismatch naming every key whose value differs between `found` (from `source`) and
    `wanted` (a key present on one side only differs too)."""
    differences = [
        f"{key}={found.get(key)!r} (this call: {wanted.get(key)!r})"
        for key in {**found, **wanted}
        if found.get(key) != wanted.get(key)
    ]
    if differences:
        raise RunMismatch(
            f"{source} was made with other settings or data: {', '.join(differences)}. "
            f"To make it again here, {hint}; or use another folder."
        )


def safe_name(text: str) -> str:
    """`text` reduced to letters, digits, '.', '_' and '-' (other runs of characters become '_')."""
    return re.sub(r"[^\w.-]+", "_", str(text)).strip("_") or "run"


def folder_name(label: str, identity=None, digits: int = 8) -> str:
    """The one rule for naming a run's folder: `label` made safe (`safe_name`), then, for a
    folder that stands for content (`identity`: anything `fingerprint` takes), '-' and the first
    `digits` hex digits of its fingerprint, so that two runs under one label never share a folder
    and the same content finds its folder again. Callers keep their `digits`: the folders on disk
    carry them."""
    name = safe_name(label)
    return name if identity is None else f"{name}-{fingerprint(identity)[:digits]}"


def named_folder(parent: str | Path, label: str, identity=None, digits: int = 8) -> Path:
    """`parent` / `folder_name(label, identity, digits)`, not yet created."""
    return Path(parent) / folder_name(label, identity, digits)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp"):
    """Yields a temporary path beside `path`; on success it is fsynced and renamed over `path`.

    For writers that need a file name rather than bytes (Keras `model.save`, `np.save`). On an error
    the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of atomic_write_bytes (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | Path, what: str = "file", hint: str = "delete it and run again"):
    """A JSON file's content; a missing or unreadable file raises with `hint` (what to do)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} is missing: {hint}.") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{what} {path} is unreadable ({error}): {hint}.") from error


def check_writable(folder: str | Path, need_bytes: int = 50_000_000) -> Path:
    """Fail early, with a clear message, if `folder` cannot take `need_bytes` of new files.

    Called before long work (training) so that a read-only or full disk is reported in the first
    second, not after hours when the model is saved.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as error:
        raise DiskError(
            f"Cannot write to the artifacts folder {folder} ({error.strerror or error}). "
            "Choose a writable ARTIFACTS_DIR or fix the folder's permissions."
        ) from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise DiskError(
            f"The artifacts folder {folder} has {free / 1e6:.0f} MB free; this step needs about "
            f"{need_bytes / 1e6:.0f} MB. Free some space or choose another ARTIFACTS_DIR."
        )
    return folder
