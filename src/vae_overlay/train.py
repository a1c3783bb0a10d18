"""Training the VAE: one compiled step, minibatch samplers, checkpoint/resume, the NaN guard.

Every training of the project goes through `train_vae`: notebook 02 (the paper's Section 3), the
overlay models of notebook 05 and their variants, the VAEs of notebook 06's classifier experiment.
It trains with `make_train_step`, the one step function, on one device or under a tf.distribute
strategy, with an optional KL weight (`KLWeight`: beta, a linear warm-up, free bits). After every
epoch the state (weights, sampling-noise state, optimizer state, history) is written atomically, so
a killed run resumes where it stopped and ends bit for bit where an uninterrupted one would (the
files: `checkpoint.py`). The one caching rule: a run folder with a finished model made with the same
settings is loaded, not retrained; one made with other settings is refused (`runs.RunMismatch`,
naming the differences) unless `retrain=True`.

The NaN guard watches the state, not only the loss: every step also counts the non-finite gradients
and the non-finite model and optimizer variables after its update, so a NaN that a CPU's fused
kernels hide from the loss (a Conv2D + ReLU that turns NaN into 0) still stops the run, with
`TrainingDiverged` naming the epoch, the batch and the variables, and the last good checkpoint kept.
Nothing non-finite is written or loaded.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from tqdm.auto import tqdm

from vae_overlay import checkpoint, paper
from vae_overlay import model as vae_model

# mixed_batches is re-exported: the samplers are chosen where training is
from vae_overlay.batches import epoch_batches, mixed_batches, shuffled_batches  # noqa: F401
from vae_overlay.checkpoint import (  # noqa: F401 (the files' names and read_history: re-exported)
    CHECKPOINT_FILE,
    HISTORY_FILE,
    LOSS_KEYS,
    MODEL_FILE,
    OPTIMIZERS,
    RETRAIN_HINT,
    read_history,
)
from vae_overlay.data import check_images
from vae_overlay.runs import (
    atomic_write_bytes,
    atomic_write_text,
    check_same_settings,
    check_writable,
    fingerprint,
    seed_everything,
)
from vae_overlay.stream import batch_dataset


class TrainingDiverged(RuntimeError):
    """A step made the loss, the gradients or the state (weights, optimizer variables) NaN or
    infinite; the last good state stays on disk. `what` names which: "loss", "gradients" or
    "state"."""

    def __init__(self, message: str, epoch: int, batch: int, what: str = "loss"):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.what = what


@dataclass(frozen=True)
class KLWeight:
    """How the KL term enters the loss; the default (beta 1, no warm-up, no free bits) is the plain
    ELBO.

    loss = reconstruction + beta * min(1, step / warm-up steps) * KL', where KL' is the KL, or with
    `free_bits` > 0 the KL with each latent dimension's batch-mean KL raised to at least `free_bits`
    nats (Kingma et al. 2016): the encoder may spend that much on a dimension for free.
    """

    beta: float = 1.0
    warmup_epochs: float = 0.0
    free_bits: float = 0.0

    def is_plain(self) -> bool:
        return self == KLWeight()


# ----------------------------------------------------------------------------- the step

STEP_COLUMNS = ("reconstruction_loss", "kl_loss", "nonfinite_gradients", "nonfinite_state")


def _count_nonfinite(tensors) -> tf.Tensor:
    """How many of `tensors` hold a NaN or an infinity (float32): a reduction of the values
    themselves, so it does not depend on how a CPU's kernels pass NaN on (a fused Conv2D + ReLU may
    turn it into 0)."""
    flags = [
        ops.cast(ops.logical_not(ops.all(ops.isfinite(t))), "float32")
        for t in tensors
        if t is not None
    ]
    return ops.sum(ops.stack(flags)) if flags else tf.constant(0.0)


def _float_variables(variables) -> list:
    return [v for v in variables if "float" in str(v.dtype)]


def make_train_step(
    vae,
    kl_weight: KLWeight = KLWeight(),
    warmup_steps: float = 0.0,
    strategy=None,
    guard: bool = True,
):
    """The one compiled training step: `step(batch) -> [reconstruction_loss, kl_loss,
    nonfinite_gradients, nonfinite_state]` (STEP_COLUMNS) after one update.

    On one device the losses are per-image losses averaged over the batch. Under `strategy` each
    replica takes a share of the minibatch and divides its summed losses by the whole minibatch's
    size, so the all-reduced gradient is the gradient of the minibatch mean, as on one device (the
    reported losses are summed over replicas). The reported KL is the model's KL, whatever
    `kl_weight` does to the gradient. The last two columns are the NaN guard: how many gradients,
    and how many of the model's and the optimizer's float variables after the update, hold a
    non-finite value (0 when all is well). `guard=False` leaves them 0 without looking: only for
    measuring the guard's cost (benchmarks/train_speed.py --guard-cost).
    """
    weights, optimizer = vae.trainable_weights, vae.optimizer
    watched = _float_variables(checkpoint.state_variables(vae))

    def replica_step(batch, batch_size=None):
        with tf.GradientTape() as tape:
            reconstruction, kl = vae.loss_terms(batch, training=True)
            if batch_size is None:  # one device: the batch means
                losses = [ops.mean(reconstruction), ops.mean(vae.reduce_kl(kl))]
            else:  # a replica's share: summed, over the minibatch's size
                losses = [
                    ops.sum(reconstruction) / batch_size,
                    ops.sum(vae.reduce_kl(kl)) / batch_size,
                ]
            penalty = losses[1]
            if kl_weight.free_bits > 0:
                penalty = vae.reduce_kl(ops.maximum(ops.mean(kl, axis=0), kl_weight.free_bits))
            if kl_weight.beta != 1.0:
                penalty = kl_weight.beta * penalty
            if warmup_steps > 0:
                penalty = (
                    tf.minimum(1.0, tf.cast(optimizer.iterations, tf.float32) / warmup_steps)
                    * penalty
                )
            total_loss = losses[0] + penalty
        grads = tape.gradient(total_loss, weights)
        optimizer.apply_gradients(zip(grads, weights))
        if not guard:
            return tf.stack([*losses, 0.0, 0.0])
        # tf.function orders these reads after the update (automatic control dependencies).
        return tf.stack(
            [*losses, _count_nonfinite(grads), _count_nonfinite([v.value for v in watched])]
        )

    image_spec = tf.TensorSpec([None, vae.image_size, vae.image_size, 1], tf.float32)
    if strategy is None:
        return tf.function(replica_step, input_signature=[image_spec])

    @tf.function(reduce_retracing=True)
    def distributed_step(per_replica_batch, batch_size):
        losses = strategy.run(replica_step, args=(per_replica_batch, batch_size))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return distributed_step


def _feed(images, index_batches, strategy):
    """(minibatch input, its size) per index batch: gathered from memory, read from a stream, or
    split into one consecutive share per replica of `strategy` (a distributed dataset)."""
    is_stream = not isinstance(images, np.ndarray)
    if strategy is not None:
        read = images.read if is_stream else images.__getitem__
        replicas = strategy.num_replicas_in_sync

        def dataset_fn(context):
            local = replicas // context.num_input_pipelines
            # the global number of this worker's first replica
            first = context.input_pipeline_id * local
            shares = [
                np.array_split(np.asarray(batch), replicas)[first + k]
                for batch in index_batches
                for k in range(local)
            ]
            return batch_dataset(read, shares, images.shape[1])

        options = tf.distribute.InputOptions(experimental_fetch_to_device=False)
        shares = strategy.distribute_datasets_from_function(dataset_fn, options)
        return (
            (share, tf.constant(len(index), tf.float32))
            for share, index in zip(shares, index_batches)
        )
    if is_stream:
        return ((batch,) for batch in images.batches(index_batches))
    tensor = tf.constant(images)
    return ((tf.gather(tensor, index),) for index in index_batches)


def _diverged(rows: np.ndarray) -> np.ndarray:
    """Which step rows (STEP_COLUMNS) diverged: a non-finite loss or any non-finite gradient or
    variable."""
    return ~np.isfinite(rows[:, :2]).all(axis=1) | (rows[:, 2:] != 0).any(axis=1)


def run_epoch(step, images, index_batches, strategy=None) -> np.ndarray:
    """Per-batch step rows (STEP_COLUMNS), shape (batches run, 4); stops after one that diverged."""
    rows = []
    for args in _feed(images, index_batches, strategy):
        rows.append(step(*args).numpy())
        if _diverged(rows[-1][None]).any():
            break
    return np.stack(rows)


def _is_chief(strategy) -> bool:
    """False on the non-chief workers of a multi-worker strategy, which then write no files."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None or not resolver.task_type or resolver.task_type == "chief":
        return True
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


# ----------------------------------------------------------------------------- the driver


def run_settings(
    images,
    *,
    latent_dim=paper.LATENT_DIM,
    batch_size=paper.BATCH_SIZE,
    learning_rate=paper.LEARNING_RATE,
    seed=42,
    batches=None,
    loss="sum",
    optimizer=paper.OPTIMIZER,
    kl_weight=KLWeight(),
    model_options=None,
) -> dict:
    """Everything that decides a training's result, as stored with the run and compared on reuse."""
    is_array = isinstance(images, np.ndarray)
    settings = {
        "image_size": int(images.shape[1]),
        "latent_dim": int(latent_dim),
        "n_images": int(len(images)),
        "images_sha256": fingerprint(images) if is_array else images.sha256,
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "seed": int(seed),
        "batches": (
            "shuffled"
            if batches is None
            else f"custom: {getattr(batches, '__qualname__', batches)}"
        ),
        "optimizer": optimizer,
        "loss": loss,
        "model": dict(sorted((model_options or {}).items())),
    }
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    if not kl_weight.is_plain():
        settings["kl_weight"] = asdict(kl_weight)
    return settings


def train_vae(
    images,
    run_dir,
    *,
    latent_dim=paper.LATENT_DIM,
    epochs=paper.EPOCHS,
    batch_size=paper.BATCH_SIZE,
    learning_rate=paper.LEARNING_RATE,
    seed=42,
    retrain=False,
    batches=None,
    verbose=1,
    callbacks=(),
    strategy=None,
    loss="sum",
    optimizer=paper.OPTIMIZER,
    kl_weight=KLWeight(),
    model_options=None,
):
    """Train (or resume, or load) the VAE in `run_dir`; returns (vae, history of per-epoch losses).

    `images`: an array (n, size, size, 1) in [0, 1], or a stream.ImageStream (both train
    identically). Defaults: the paper's settings (latent dimension 2, 100 epochs, minibatch 10,
    RMSprop 2e-3) and loss `"sum"`. `loss`: one of model.LOSSES; `optimizer`: "rmsprop" or "adam";
    `kl_weight`: a KLWeight; `model_options`: build_encoder's options (activation, dense_units,
    log_var_bias) and `standardize_input` (standardise the encoder's input with these images' pixel
    statistics). `batches(epoch, rng)` may return each epoch's index batches (default: shuffled
    batches of `batch_size`; see mixed_batches). `strategy`: a tf.distribute strategy
    (MirroredStrategy over GPUs, MultiWorkerMirroredStrategy over machines sharing `run_dir`; only
    the chief writes): each minibatch is split across the replicas and one synchronous update made,
    so the settings keep their meaning.

    A checkpoint is written atomically after every epoch, so an interrupted run resumes where it
    stopped; a finished run with these settings is loaded instead of retrained unless
    `retrain=True`; a run folder holding other settings raises runs.RunMismatch. Callbacks get
    epoch-level hooks; `logs` hold the three losses. `verbose`: 0 quiet; 1 a progress bar over
    epochs (with the latest losses); 2 one line per epoch. Side effect: `runs.seed_everything(seed,
    deterministic=True)`.
    """
    images = check_images(images)
    chief = _is_chief(strategy)
    # a full disk fails now, not after training
    run_dir = check_writable(run_dir) if chief else Path(run_dir)
    model_path, history_path, checkpoint_path = (
        run_dir / MODEL_FILE,
        run_dir / HISTORY_FILE,
        run_dir / CHECKPOINT_FILE,
    )
    settings = run_settings(
        images,
        latent_dim=latent_dim,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        batches=batches,
        loss=loss,
        optimizer=optimizer,
        kl_weight=kl_weight,
        model_options=model_options,
    )
    batches = batches or shuffled_batches(len(images), batch_size)
    say = print if verbose else (lambda *args, **kwargs: None)
    seed_everything(seed, deterministic=True)

    if retrain and chief:
        for path in (checkpoint_path, model_path, history_path):
            path.unlink(missing_ok=True)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        if not retrain and checkpoint_path.exists():
            run = _resume_checkpoint(checkpoint_path, history_path, settings, images)
            say(f"Resuming from {checkpoint_path} after epoch {run.done}.")
        elif not retrain and model_path.exists():
            run = _reload_model(model_path, history_path, checkpoint_path, settings, epochs)
            if run.done == epochs:
                say(
                    f"Loaded the finished model {model_path} ({run.done} epochs); set retrain=True"
                    " to train again."
                )
                return run.vae, run.history
            say(f"Continuing {model_path} from epoch {run.done} to {epochs}.")
        else:
            run = _new_run(settings, images, checkpoint_path, chief)
        writer = checkpoint.Writer(enabled=chief)
        try:
            _train_epochs(
                run,
                images,
                epochs,
                batches,
                settings,
                writer,
                run_dir=run_dir,
                callbacks=callbacks,
                verbose=verbose,
                kl_weight=kl_weight,
                strategy=strategy,
            )
        except BaseException:
            # on an interruption too, the last checkpoint reaches the disk whole
            writer.wait(quiet=True)
            raise
        writer.wait()
    if not chief:
        return run.vae, run.history
    _save_finished(run, settings, model_path, history_path, checkpoint_path)
    say(
        f"Saved {model_path} and {history_path} ({len(run.history['loss'])} epochs, "
        f"{sum(run.epoch_seconds):.1f} s of training)."
    )
    return run.vae, run.history


@dataclass
class _Progress:
    """How far a train_vae run is: its model, the epochs done, their losses (LOSS_KEYS -> one value
    per epoch) and their seconds. The epoch loop extends it in place."""

    vae: keras.Model
    done: int
    history: dict
    epoch_seconds: list


def _resume_checkpoint(
    checkpoint_path: Path, history_path: Path, settings: dict, images
) -> _Progress:
    """train_vae's progress from the checkpoint of an interrupted run."""
    vae, start, history = checkpoint.load_checkpoint(checkpoint_path, settings, images)
    epoch_seconds: list[float] = []
    if history_path.exists():
        epoch_seconds = read_history(history_path).get("epoch_seconds", [])[:start]
    return _Progress(vae, start, history, epoch_seconds)


def _reload_model(
    model_path: Path, history_path: Path, checkpoint_path: Path, settings: dict, epochs
) -> _Progress:
    """train_vae's progress from a saved model (finished, or to be continued to more `epochs`).
    Raises ValueError when the history says the run
    is unfinished (its checkpoint is missing) and runs.RunMismatch when the settings differ or the
    model has more epochs than asked."""
    record = read_history(history_path)
    if not record.get("finished"):
        raise ValueError(
            f"{history_path} describes an unfinished run but {checkpoint_path.name} is "
            f"missing: {RETRAIN_HINT} to train again."
        )
    check_same_settings(record["settings"], settings, history_path, RETRAIN_HINT)
    start, history, epoch_seconds = (record["epochs"], record["history"], record["epoch_seconds"])
    if start > epochs:
        check_same_settings({"epochs": start}, {"epochs": epochs}, model_path, RETRAIN_HINT)
    return _Progress(vae_model.load_vae(model_path), start, history, epoch_seconds)


def _new_run(settings: dict, images, checkpoint_path: Path, chief: bool) -> _Progress:
    """train_vae's progress for a new run: a new vae, no epochs done; the chief writes its
    checkpoint at once, so that even epoch 1 can fall back."""
    vae, history = checkpoint.new_vae(settings, images), {key: [] for key in LOSS_KEYS}
    if chief:
        atomic_write_bytes(
            checkpoint_path,
            checkpoint.checkpoint_bytes(
                [v.numpy() for v in checkpoint.state_variables(vae)],
                0,
                history,
                settings,
                checkpoint_path,
            ),
        )
    return _Progress(vae, 0, history, [])


def _save_finished(
    run: _Progress, settings: dict, model_path: Path, history_path: Path, checkpoint_path: Path
) -> None:
    """Write a finished run: its history marked finished, then the model; the checkpoint goes."""
    atomic_write_text(
        history_path,
        checkpoint.history_record(run.history, settings, run.epoch_seconds, finished=True),
    )
    vae_model.save_vae(model_path, run.vae)
    checkpoint_path.unlink(missing_ok=True)


def _divergence(
    row: np.ndarray, epoch: int, batch: int, variables, checkpoint: Path
) -> TrainingDiverged:
    """The TrainingDiverged for a diverged step row: what became non-finite first (the gradients
    before the weights they update, the weights before the loss they give) and the variables now
    holding it."""
    loss = float(row[:2].sum())
    if row[2] or row[3]:
        what = "gradients" if row[2] else "state"
        names = [v.path for v in _float_variables(variables) if not np.isfinite(v.numpy()).all()]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        subject = (
            "gradients" if what == "gradients" else "model's state (weights, optimizer variables)"
        )
        change = (
            f"the {subject} became non-finite (now in {shown or 'no variable'}; the loss was"
            f" {loss:.6g})"
        )
    else:
        what, change = "loss", f"the loss became {loss}"
    return TrainingDiverged(
        f"Training diverged: {change} at epoch {epoch}, batch {batch}. The last good state (after"
        f" epoch {epoch - 1}) is kept in {checkpoint}; check the images or lower the learning rate,"
        " then re-run (it resumes there) or set retrain=True.",
        epoch=epoch,
        batch=batch,
        what=what,
    )


def _train_epochs(
    run: _Progress,
    images,
    epochs: int,
    batches,
    settings: dict,
    writer: checkpoint.Writer,
    *,
    run_dir: Path,
    callbacks,
    verbose: int,
    kl_weight: KLWeight,
    strategy,
) -> None:
    """The epoch loop of train_vae, from `run.done` to `epochs`: train, check the losses, extend
    `run`, checkpoint in the background (`writer`), report."""
    vae, history, epoch_seconds, seed = run.vae, run.history, run.epoch_seconds, settings["seed"]
    warmup_steps = (
        kl_weight.warmup_epochs * len(epoch_batches(batches, 0, seed, len(images)))
        if kl_weight.warmup_epochs
        else 0.0
    )
    step = make_train_step(vae, kl_weight, warmup_steps, strategy)
    variables = checkpoint.state_variables(vae)
    # one call, not one read per variable
    snapshot = tf.function(lambda: [tf.identity(v) for v in variables])
    callback_list = keras.callbacks.CallbackList(list(callbacks), model=vae)
    vae.stop_training = False
    callback_list.on_train_begin()
    bar = tqdm(
        total=epochs,
        initial=run.done,
        desc="epochs",
        unit="epoch",
        disable=verbose != 1,
        mininterval=1.0,
    )
    for epoch in range(run.done, epochs):
        callback_list.on_epoch_begin(epoch)
        started = time.perf_counter()
        index_batches = epoch_batches(batches, epoch, seed, len(images))
        losses = run_epoch(step, images, index_batches, strategy)
        bad = np.flatnonzero(_diverged(losses))
        if len(bad) or len(losses) < len(index_batches):
            writer.wait()  # the last good checkpoint is complete on disk before we stop
            batch = int(bad[0]) + 1 if len(bad) else len(losses) + 1
            raise _divergence(
                losses[batch - 1], epoch + 1, batch, variables, run_dir / CHECKPOINT_FILE
            )
        # Every batch weighted by its image count, so loss == reconstruction + kl holds per epoch.
        weights = np.array([len(b) for b in index_batches], np.float64)
        reconstruction, kl = (
            float(np.dot(weights, losses[:, i].astype(np.float64)) / weights.sum()) for i in (0, 1)
        )
        logs = {"loss": reconstruction + kl, "reconstruction_loss": reconstruction, "kl_loss": kl}
        for key in LOSS_KEYS:
            history[key].append(logs[key])
        epoch_seconds.append(time.perf_counter() - started)
        run.done = epoch + 1
        arrays = [value.numpy() for value in snapshot()]
        done = {key: list(values) for key, values in history.items()}
        # Serialised on the writer's thread; the default arguments bind this epoch's values.
        payload = lambda a=arrays, e=epoch + 1, h=done: checkpoint.checkpoint_bytes(  # noqa: E731
            a, e, h, settings, run_dir / CHECKPOINT_FILE
        )
        writer.submit(
            [
                (run_dir / CHECKPOINT_FILE, payload),
                (
                    run_dir / HISTORY_FILE,
                    checkpoint.history_record(done, settings, list(epoch_seconds), False).encode(),
                ),
            ]
        )
        bar.set_postfix(loss=f"{logs['loss']:.2f}", kl=f"{kl:.2f}", refresh=False)
        bar.update()
        if verbose >= 2:
            print(
                f"epoch {epoch + 1:3d}/{epochs}  loss {logs['loss']:9.2f}  reconstruction"
                f" {reconstruction:9.2f}  kl {kl:6.2f}  {epoch_seconds[-1]:.2f} s",
                flush=True,
            )
        callback_list.on_epoch_end(epoch, dict(logs))
        if vae.stop_training:
            bar.write(f"Stopped by a callback after epoch {epoch + 1}.")
            break
    bar.close()
    callback_list.on_train_end()
