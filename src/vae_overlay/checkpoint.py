"""A training's state on disk: the checkpoint a run resumes from, its history record, the files'
names.

`train.train_vae` writes `checkpoint.npz` (every state variable, the epoch, the history and the
settings) after every epoch, on a background thread (`Writer`), and `history.json` beside it; a
finished run keeps `vae.keras` and `history.json`. A state holding NaN or infinity is never written
and never resumed (runs.NonFiniteState).
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import keras
import numpy as np

from vae_overlay import model
from vae_overlay.runs import atomic_write_bytes, check_finite, check_same_settings

MODEL_FILE = "vae.keras"
HISTORY_FILE = "history.json"
CHECKPOINT_FILE = "checkpoint.npz"
LOSS_KEYS = ("loss", "reconstruction_loss", "kl_loss")
OPTIMIZERS = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}
RETRAIN_HINT = "set retrain=True (RETRAIN = True in the notebook)"


def state_variables(vae) -> list:
    """Everything a resumed run needs: the weights, the sampling generator's state, then the
    optimizer's iteration count and moments."""
    return list(vae.variables) + list(vae.optimizer.variables)


def new_vae(settings: dict, images):
    """A compiled, untrained VAE (optimizer built) for a run's settings (`train.run_settings`)."""
    options = dict(settings["model"])
    if options.pop("standardize_input", False):
        options["standardize_with"] = images
    vae = model.build_vae(
        settings["image_size"],
        settings["latent_dim"],
        settings["seed"],
        loss=settings["loss"],
        **options,
    )
    vae.compile(
        optimizer=OPTIMIZERS[settings["optimizer"]](learning_rate=settings["learning_rate"])
    )
    vae.optimizer.build(vae.trainable_variables)
    return vae


def checkpoint_bytes(arrays: list, epoch: int, history: dict, settings: dict, path: Path) -> bytes:
    """checkpoint.npz's bytes; refuses (runs.NonFiniteState) a state holding NaN or infinity."""
    check_finite(
        [(f"v{i:04d}", a) for i, a in enumerate(arrays)],
        path,
        "refusing to write a checkpoint",
        "The state diverged before it was saved: lower the learning rate or set retrain=True.",
    )
    buffer = io.BytesIO()
    meta = json.dumps({"epoch": epoch, "history": history, "settings": settings})
    np.savez(buffer, meta=np.array(meta), **{f"v{i:04d}": a for i, a in enumerate(arrays)})
    return buffer.getvalue()


def load_checkpoint(path: Path, wanted: dict, images):
    """(vae with weights and optimizer state, epoch, history) from checkpoint.npz."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            arrays = [stored[f"v{i:04d}"] for i in range(len(stored.files) - 1)]
    except Exception as error:
        raise ValueError(
            f"{path} is unreadable ({type(error).__name__}: {error}): delete it or {RETRAIN_HINT}."
        ) from error
    check_same_settings(meta["settings"], wanted, path, RETRAIN_HINT)
    check_finite(
        [(f"v{i:04d}", a) for i, a in enumerate(arrays)],
        path,
        "not resumed",
        f"Delete it or {RETRAIN_HINT}.",
    )
    vae = new_vae(meta["settings"], images)
    variables = state_variables(vae)
    if len(variables) != len(arrays) or any(v.shape != a.shape for v, a in zip(variables, arrays)):
        raise ValueError(
            f"{path} does not match the model's variables: delete it or {RETRAIN_HINT}."
        )
    for variable, array in zip(variables, arrays):
        variable.assign(array)
    return vae, int(meta["epoch"]), meta["history"]


def history_record(history: dict, settings: dict, epoch_seconds: list, finished: bool) -> str:
    """history.json's text: settings, per-epoch losses and seconds, and whether the run finished."""
    return json.dumps(
        {
            "epochs": len(history["loss"]),
            "finished": finished,
            "settings": settings,
            "history": history,
            "epoch_seconds": epoch_seconds,
        },
        indent=1,
    )


def read_history(path: str | Path) -> dict:
    """The record train_vae writes beside its model: settings, per-epoch losses and seconds,
    finished."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        if not all(len(record["history"][key]) == record["epochs"] for key in LOSS_KEYS):
            raise ValueError("history lengths differ from the epoch count")
        return record
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} is missing next to its model: {RETRAIN_HINT} to train again."
        ) from None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path} is unreadable ({error}): {RETRAIN_HINT} to train again."
        ) from error


class Writer:
    """Writes checkpoint and history on a background thread while the next epoch trains (chief
    only)."""

    def __init__(self, enabled: bool = True):
        self.enabled, self._thread, self._error = enabled, None, None

    def submit(self, writes: list) -> None:
        self.wait()
        if not self.enabled:
            return

        def run():
            try:
                for path, payload in writes:  # the checkpoint alone decides where a run resumes
                    atomic_write_bytes(path, payload() if callable(payload) else payload)
            except BaseException as error:  # reported by wait(), in the training thread
                self._error = error

        self._thread = threading.Thread(target=run, name="vae-checkpoint", daemon=False)
        self._thread.start()

    def wait(self, quiet: bool = False) -> None:
        """Block until the last write is done; re-raise its error unless `quiet`."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            if not quiet:
                raise error
