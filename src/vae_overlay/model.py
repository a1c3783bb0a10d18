"""The keras.io convolutional VAE (the paper's reference [15]), its loss, and resumable training."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from vae_overlay.data import atomic_write_bytes, atomic_write_text, check_writable
from vae_overlay.stream import batch_dataset

MODEL_FILE = "vae.keras"
HISTORY_FILE = "history.json"
CHECKPOINT_FILE = "checkpoint.npz"
LOSS_KEYS = ("loss", "reconstruction_loss", "kl_loss")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good state stays on disk."""

    def __init__(self, message: str, epoch: int, batch: int):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


class RunMismatch(ValueError):
    """The run folder holds a model trained with other settings or data."""


# ----------------------------------------------------------------------------- model

@keras.saving.register_keras_serializable(package="vae_overlay")
class Sampling(layers.Layer):
    """Draws z = z_mean + exp(z_log_var / 2) * epsilon, epsilon ~ N(0, I) (reparameterisation trick)."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        # The generator's state is a layer variable, so it is saved and restored with the weights.
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}

    # Keras does not save a SeedGenerator's state by itself; keep it in vae.keras so that training
    # continued from a saved model draws the same noise as an uninterrupted run.
    def save_own_variables(self, store):
        store["seed_generator_state"] = self.seed_generator.state.numpy()

    def load_own_variables(self, store):
        if "seed_generator_state" in store:
            self.seed_generator.state.assign(np.asarray(store["seed_generator_state"]))


def kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, 1)) per latent dimension (element-wise)."""
    return -0.5 * (1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))


def _check_sizes(image_size: int, latent_dim: int) -> None:
    if image_size < 4 or image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 (two stride-2 layers), got {image_size}")
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")


def build_encoder(image_size: int = 64, latent_dim: int = 2, seed: int | None = None) -> keras.Model:
    """Encoder image -> [z_mean, z_log_var, z], as in the keras.io VAE example."""
    _check_sizes(image_size, latent_dim)
    encoder_inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same", name="conv_1")(encoder_inputs)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same", name="conv_2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(16, activation="relu", name="dense")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling(seed=seed, name="z")([z_mean, z_log_var])
    return keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")


def build_decoder(image_size: int = 64, latent_dim: int = 2) -> keras.Model:
    """Decoder z -> image with pixel values in (0, 1), as in the keras.io VAE example."""
    _check_sizes(image_size, latent_dim)
    side = image_size // 4
    latent_inputs = keras.Input(shape=(latent_dim,), name="z")
    x = layers.Dense(side * side * 64, activation="relu", name="dense")(latent_inputs)
    x = layers.Reshape((side, side, 64), name="reshape")(x)
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same", name="deconv_1")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same", name="deconv_2")(x)
    decoder_outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same", name="image")(x)
    return keras.Model(latent_inputs, decoder_outputs, name="decoder")


@keras.saving.register_keras_serializable(package="vae_overlay")
class VAE(keras.Model):
    """Encoder + decoder trained on binary cross-entropy (summed over pixels) + KL (summed over z)."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        # Encoder and decoder are functional models, built on creation; marking the VAE built lets
        # Keras save it and rebuild the optimizer (and restore its state) when loading.
        self.built = True

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    @property
    def image_size(self) -> int:
        return int(self.encoder.inputs[0].shape[1])

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.inputs[0].shape[-1])

    def call(self, inputs, training=False):
        _, _, z = self.encoder(inputs, training=training)
        return self.decoder(z, training=training)

    def loss_terms(self, data, training=False):
        """Per-image (reconstruction, kl), each of shape (batch,): BCE summed over pixels, KL over z."""
        z_mean, z_log_var, z = self.encoder(data, training=training)
        reconstruction = self.decoder(z, training=training)
        return (ops.sum(keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)),
                ops.sum(kl_divergence(z_mean, z_log_var), axis=1))

    def compute_losses(self, data, training=False):
        """(reconstruction_loss, kl_loss) of a batch, each a per-image sum averaged over the batch."""
        reconstruction, kl = self.loss_terms(data, training=training)
        return ops.mean(reconstruction), ops.mean(kl)

    def train_step(self, data):
        # Kept for vae.fit(...) as in the keras.io example; train_vae uses a faster compiled epoch loop.
        if isinstance(data, tuple):
            data = data[0]
        with tf.GradientTape() as tape:
            reconstruction_loss, kl_loss = self.compute_losses(data, training=True)
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        # The same weight (images in the batch) for all three trackers keeps loss == rec + kl per epoch.
        batch_size = ops.cast(ops.shape(data)[0], "float32")
        self.total_loss_tracker.update_state(total_loss, sample_weight=batch_size)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss, sample_weight=batch_size)
        self.kl_loss_tracker.update_state(kl_loss, sample_weight=batch_size)
        return {metric.name: metric.result() for metric in self.metrics}

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"), custom_objects=custom_objects)
        decoder = keras.saving.deserialize_keras_object(config.pop("decoder"), custom_objects=custom_objects)
        return cls(encoder, decoder, **config)


def build_vae(image_size: int = 64, latent_dim: int = 2, seed: int | None = 42) -> VAE:
    """A new, untrained VAE; with a seed, initial weights and sampling noise are reproducible."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    encoder = build_encoder(image_size, latent_dim, seed=seed)
    decoder = build_decoder(image_size, latent_dim)
    return VAE(encoder, decoder, name="vae")


def load_vae(path: str | Path) -> VAE:
    """Load a VAE saved by train_vae (safe_mode=True); says how to make one if it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run notebooks/02_train_vae.ipynb first "
                                "(with the same DATASET and ARTIFACTS_DIR).")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # corrupt zip, truncated weights, foreign classes, ...
        raise ValueError(f"{path} could not be loaded as a VAE ({type(error).__name__}: {error}). "
                         "Delete it, or re-run notebooks/02_train_vae.ipynb with RETRAIN = True.") from error
    if not isinstance(model, VAE):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a vae_overlay VAE: re-run "
                         "notebooks/02_train_vae.ipynb with RETRAIN = True.")
    return model


def encode_mean(encoder, images, batch_size: int = 256) -> np.ndarray:
    """z_mean of every image (n, latent_dim), in batches; accepts the encoder or the whole VAE, and an
    array or a stream.ImageStream (read a batch at a time)."""
    if isinstance(encoder, VAE):
        encoder = encoder.encoder
    if not _is_stream(images):
        images = np.asarray(images, dtype=np.float32)
    means = [np.asarray(encoder(images[start:start + batch_size], training=False)[0])
             for start in range(0, len(images), batch_size)]
    latent_dim = int(encoder.outputs[0].shape[-1])
    return np.concatenate(means, axis=0) if means else np.zeros((0, latent_dim), np.float32)


# ----------------------------------------------------------------------------- training

def shuffled_batches(n_images: int, batch_size: int):
    """Default minibatches: a permutation of all images cut into batches (the last may be smaller)."""
    def batches(epoch: int, rng: np.random.Generator):
        order = rng.permutation(n_images)
        return [order[start:start + batch_size] for start in range(0, n_images, batch_size)]
    batches.__qualname__ = f"shuffled_batches({n_images}, {batch_size})"
    return batches


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    # Depends only on (seed, epoch), so a resumed run sees the same batches as an uninterrupted one.
    return np.random.default_rng([seed, epoch])


def _is_stream(images) -> bool:
    return hasattr(images, "batches") and hasattr(images, "read")  # a stream.ImageStream


def _check_images(images):
    if _is_stream(images):  # decoded by data.load_image: finite, in [0, 1]; never empty (checked on opening)
        return images
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


def _index_batches(batches, epoch, rng, n_images) -> list[np.ndarray]:
    result = []
    for number, batch in enumerate(batches(epoch, rng), start=1):
        batch = np.asarray(batch)
        if batch.ndim != 1 or batch.size == 0 or not np.issubdtype(batch.dtype, np.integer):
            raise ValueError(f"batches({epoch}, rng) gave batch {number} as {batch.dtype} "
                             f"{batch.shape}: expected a non-empty 1-D array of image indices.")
        if batch.min() < 0 or batch.max() >= n_images:
            raise ValueError(f"batches({epoch}, rng) gave batch {number} with an index outside "
                             f"[0, {n_images}).")
        result.append(batch.astype(np.int32))
    if not result:
        raise ValueError(f"batches({epoch}, rng) gave no batch.")
    return result


def _make_train_step(vae: VAE):
    """The compiled training step: gather a minibatch in the graph, one RMSprop update, its losses."""
    weights = vae.trainable_weights
    optimizer = vae.optimizer
    images_spec = tf.TensorSpec([None, vae.image_size, vae.image_size, 1], tf.float32)

    # A per-step function traces in about half the time of a loop over the epoch inside one function,
    # and runs as fast (the step is dominated by the Conv2DTranspose kernels, not by Python).
    @tf.function(input_signature=[images_spec, tf.TensorSpec([None], tf.int32)])
    def train_step(images, index):
        batch = tf.gather(images, index)
        with tf.GradientTape() as tape:
            reconstruction_loss, kl_loss = vae.compute_losses(batch, training=True)
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, weights)
        optimizer.apply_gradients(zip(grads, weights))
        return tf.stack([reconstruction_loss, kl_loss])

    return train_step


def _make_batch_step(vae: VAE):
    """As _make_train_step, for a minibatch of images given as they are (streamed from disk)."""
    train_step = _make_train_step(vae)
    images_spec = tf.TensorSpec([None, vae.image_size, vae.image_size, 1], tf.float32)
    # The same graph as the in-memory step (gathering every row in order is the identity), so a stream
    # trains bit for bit as the array would.
    return tf.function(lambda batch: train_step.python_function(batch, tf.range(tf.shape(batch)[0])),
                       input_signature=[images_spec])


def _make_distributed_step(vae: VAE, strategy):
    """One synchronous update over all replicas of `strategy`: each replica takes its share of the minibatch.

    Each replica's loss is its images' summed losses divided by the whole minibatch's size, so the summed
    (all-reduced) gradients equal the gradient of the minibatch mean, as on one device.
    """
    weights = vae.trainable_weights
    optimizer = vae.optimizer

    def replica_step(batch, batch_size):
        with tf.GradientTape() as tape:
            reconstruction, kl = vae.loss_terms(batch, training=True)
            losses = tf.stack([tf.reduce_sum(reconstruction), tf.reduce_sum(kl)]) / batch_size
            total_loss = tf.reduce_sum(losses)
        grads = tape.gradient(total_loss, weights)
        optimizer.apply_gradients(zip(grads, weights))
        return losses

    @tf.function(reduce_retracing=True)
    def step(per_replica_batch, batch_size):
        losses = strategy.run(replica_step, args=(per_replica_batch, batch_size))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return step


def _replica_dataset(read, index_batches, image_size, strategy) -> object:
    """Each minibatch split into one consecutive share per replica, as a distributed dataset of `strategy`."""
    replicas = strategy.num_replicas_in_sync

    def dataset_fn(context):
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local  # the global number of this worker's first replica
        shares = [np.array_split(np.asarray(batch), replicas)[first + k]
                  for batch in index_batches for k in range(local)]
        return batch_dataset(read, shares, image_size)

    options = tf.distribute.InputOptions(experimental_fetch_to_device=False)
    return strategy.distribute_datasets_from_function(dataset_fn, options)


def _run_steps(train_step, images, index_batches, strategy=None) -> np.ndarray:
    """Per-batch (reconstruction, kl) losses, shape (batches run, 2); stops after a non-finite one.

    `images`: a tf constant (in memory), or an ImageStream read batch by batch through tf.data; with a
    strategy, `train_step` is _make_distributed_step's and `images` is read by `read(index)`.
    """
    if strategy is not None:
        read = images.read if _is_stream(images) else images.__getitem__
        shares = _replica_dataset(read, index_batches, images.shape[1], strategy)
        results = (train_step(share, tf.constant(len(index), tf.float32))
                   for share, index in zip(shares, index_batches))
    elif _is_stream(images):
        results = (train_step(batch) for batch in images.batches(index_batches))
    else:
        results = (train_step(images, tf.constant(index)) for index in index_batches)
    losses = []
    for result in results:
        losses.append(result.numpy())
        if not np.isfinite(losses[-1]).all():
            break
    return np.stack(losses)


def _run_epoch(run_batches, images, index_batches) -> np.ndarray:
    """Like _run_steps for a function of (images, 2-D index batches); overlay.py's epoch loops use it."""
    results, start = [], 0
    while start < len(index_batches):  # consecutive batches of equal size go in one call
        stop = start + 1
        while stop < len(index_batches) and len(index_batches[stop]) == len(index_batches[start]):
            stop += 1
        results.append(run_batches(images, tf.constant(np.stack(index_batches[start:stop]))).numpy())
        if len(results[-1]) < stop - start or not np.isfinite(results[-1]).all():
            break
        start = stop
    return np.concatenate(results, axis=0)


def _fingerprint(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]


def _settings(images, latent_dim, batch_size, learning_rate, seed, batches) -> dict:
    return {
        "image_size": int(images.shape[1]),
        "latent_dim": int(latent_dim),
        "n_images": int(len(images)),
        "images_sha256": images.sha256 if _is_stream(images) else _fingerprint(images),
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "seed": int(seed),
        "batches": "shuffled" if batches is None else f"custom: {getattr(batches, '__qualname__', batches)}",
        "optimizer": "RMSprop",
    }


def _check_same_settings(found: dict, wanted: dict, source: Path) -> None:
    differences = [f"{key}={found.get(key)!r} (this call: {wanted[key]!r})"
                   for key in wanted if found.get(key) != wanted[key]]
    if differences:
        raise RunMismatch(f"{source} was trained with other settings or data: {', '.join(differences)}. "
                          "Set retrain=True (RETRAIN = True in notebook 02) to train again here, "
                          "or use another ARTIFACTS_DIR.")


def _new_compiled_vae(settings: dict) -> VAE:
    vae = build_vae(settings["image_size"], settings["latent_dim"], settings["seed"])
    vae.compile(optimizer=keras.optimizers.RMSprop(learning_rate=settings["learning_rate"]))
    vae.optimizer.build(vae.trainable_variables)
    return vae


def _state_variables(vae: VAE) -> list:
    # Weights, the sampling generator's state, then the optimizer's iteration count and moments.
    return list(vae.variables) + list(vae.optimizer.variables)


def _make_snapshot_function(vae: VAE):
    """Reads every state variable in one compiled call (one eager read per variable is ~20x slower)."""
    variables = _state_variables(vae)

    @tf.function
    def snapshot():
        return [tf.identity(variable) for variable in variables]

    return lambda: [value.numpy() for value in snapshot()]


class _CheckpointWriter:
    """Writes checkpoint.npz and history.json on a background thread while the next epoch trains."""

    def __init__(self):
        self._thread = None
        self._error = None

    def submit(self, write, *args) -> None:
        self.wait()

        def run():
            try:
                write(*args)
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


class _NoWriter(_CheckpointWriter):
    """Non-chief workers of a multi-worker run: the chief writes the shared run folder."""

    def submit(self, write, *args) -> None:
        pass


def _write_checkpoint(path: Path, arrays: list, epoch: int, history: dict, settings: dict) -> None:
    meta = {"epoch": epoch, "history": history, "settings": settings}
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **{f"v{i:04d}": a for i, a in enumerate(arrays)})
    atomic_write_bytes(path, buffer.getvalue())


def _save_checkpoint(path: Path, vae: VAE, epoch: int, history: dict, settings: dict) -> None:
    _write_checkpoint(path, [v.numpy() for v in _state_variables(vae)], epoch, history, settings)


def _load_checkpoint(path: Path, wanted: dict):
    """(vae with weights and optimizer state, epoch, history) from checkpoint.npz."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            arrays = [stored[f"v{i:04d}"] for i in range(len(stored.files) - 1)]
    except Exception as error:
        raise ValueError(f"{path} is unreadable ({type(error).__name__}: {error}): delete it or set "
                         "retrain=True (RETRAIN = True in notebook 02).") from error
    _check_same_settings(meta["settings"], wanted, path)
    vae = _new_compiled_vae(meta["settings"])
    variables = _state_variables(vae)
    if len(variables) != len(arrays) or any(v.shape != a.shape for v, a in zip(variables, arrays)):
        raise ValueError(f"{path} does not match the model's variables: delete it or set retrain=True.")
    for variable, array in zip(variables, arrays):
        variable.assign(array)
    return vae, int(meta["epoch"]), meta["history"]


def _save_model(path: Path, vae: VAE) -> None:
    """vae.save to a temporary file in the same folder, fsync, then rename over `path`."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(handle)
    try:
        vae.save(tmp)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_history(path: Path, history: dict, settings: dict, epoch_seconds: list, finished: bool) -> None:
    record = {"epochs": len(history["loss"]), "finished": finished, "settings": settings,
              "history": history, "epoch_seconds": epoch_seconds}
    atomic_write_text(path, json.dumps(record, indent=1))


def _read_history(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
        if not all(len(record["history"][key]) == record["epochs"] for key in LOSS_KEYS):
            raise ValueError("history lengths differ from the epoch count")
        return record
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing next to its model: set retrain=True (RETRAIN = True "
                                "in notebook 02) to train again.") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is unreadable ({error}): set retrain=True (RETRAIN = True in "
                         "notebook 02) to train again.") from error


def _copy(history: dict) -> dict:
    return {key: list(values) for key, values in history.items()}


def _write_checkpoint_and_history(checkpoint_path, history_path, arrays, epoch, history, settings,
                                  epoch_seconds) -> None:
    # The checkpoint alone decides where a run resumes; history.json follows for people watching.
    _write_checkpoint(checkpoint_path, arrays, epoch, history, settings)
    _write_history(history_path, history, settings, epoch_seconds, finished=False)


def _epoch_logs(losses: np.ndarray, sizes: np.ndarray) -> dict:
    # Every batch weighted by its image count for all three values, so loss == rec + kl holds per epoch.
    weights = sizes[:len(losses)].astype(np.float64)
    reconstruction = float(np.dot(weights, losses[:, 0].astype(np.float64)) / weights.sum())
    kl = float(np.dot(weights, losses[:, 1].astype(np.float64)) / weights.sum())
    return {"loss": reconstruction + kl, "reconstruction_loss": reconstruction, "kl_loss": kl}


def _train_epochs(vae, images, start_epoch, epochs, batches, seed, history, epoch_seconds, settings,
                  checkpoint_path, history_path, writer, callbacks, say, verbose, strategy=None) -> None:
    """The epoch loop of train_vae: train, check the losses, checkpoint in the background, report."""
    if strategy is not None:
        train_step, images_tensor = _make_distributed_step(vae, strategy), images
    elif _is_stream(images):
        train_step, images_tensor = _make_batch_step(vae), images
    else:
        train_step, images_tensor = _make_train_step(vae), tf.constant(images)
    snapshot = _make_snapshot_function(vae)
    callback_list = keras.callbacks.CallbackList(list(callbacks), model=vae)
    vae.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(start_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        started = time.perf_counter()
        index_batches = _index_batches(batches, epoch, _epoch_rng(seed, epoch), len(images))
        losses = _run_steps(train_step, images_tensor, index_batches, strategy)
        bad = np.flatnonzero(~np.isfinite(losses).all(axis=1))
        if len(bad) or len(losses) < len(index_batches):
            writer.wait()  # the last good checkpoint is complete on disk before we stop
            batch_number = int(bad[0]) + 1 if len(bad) else len(losses) + 1
            raise TrainingDiverged(
                f"Training diverged: the loss became {losses[batch_number - 1].sum()} at epoch {epoch + 1}, "
                f"batch {batch_number}. The last good state (after epoch {epoch}) is kept in "
                f"{checkpoint_path}; check the images or lower the learning rate, then re-run "
                "(it resumes there) or set retrain=True.", epoch=epoch + 1, batch=batch_number)
        logs = _epoch_logs(losses, np.array([len(b) for b in index_batches]))
        for key in LOSS_KEYS:
            history[key].append(logs[key])
        epoch_seconds.append(time.perf_counter() - started)
        writer.submit(_write_checkpoint_and_history, checkpoint_path, history_path, snapshot(), epoch + 1,
                      _copy(history), settings, list(epoch_seconds))
        if verbose >= 2 or epochs <= 20 or epoch < start_epoch + 3 or (epoch + 1) % 10 == 0 \
                or epoch + 1 == epochs:
            say(f"epoch {epoch + 1:3d}/{epochs}  loss {logs['loss']:9.2f}  reconstruction "
                f"{logs['reconstruction_loss']:9.2f}  kl {logs['kl_loss']:6.2f}  {epoch_seconds[-1]:.2f} s",
                flush=True)
        callback_list.on_epoch_end(epoch, dict(logs))
        if vae.stop_training:
            say(f"Stopped by a callback after epoch {epoch + 1}.")
            break
    callback_list.on_train_end()


def _is_chief(strategy) -> bool:
    """False on the non-chief workers of a multi-worker strategy, which then write no files."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 \
        and "chief" not in resolver.cluster_spec().as_dict()


def train_vae(images, run_dir, *, latent_dim=2, epochs=100, batch_size=10, learning_rate=2e-3, seed=42,
              retrain=False, batches=None, verbose=1, callbacks=(), strategy=None):
    """Train (or resume, or load) the VAE in `run_dir`; returns (vae, history of per-epoch losses).

    `images`: an array (n, size, size, 1) in [0, 1], or a stream.ImageStream for folders larger than memory
    (stream.open_images picks one); both train identically. `strategy`: a tf.distribute strategy
    (MirroredStrategy over several GPUs, MultiWorkerMirroredStrategy over several machines, whose workers
    must share `run_dir`; only the chief writes to it): every minibatch is split across the replicas and
    one synchronous update made, so the settings (minibatch 10, RMSprop 2e-3) keep their meaning. Each
    replica draws its own share of the noise from the same generator state, so the losses follow the
    single-device curve closely but not bit for bit.

    A checkpoint (weights, sampling state, optimizer state, history) is written atomically after every
    epoch, so an interrupted run resumes where it stopped; a finished `vae.keras` with these settings is
    loaded instead of retrained unless `retrain=True`. `batches(epoch, rng)` may return the index arrays
    of each epoch's minibatches (default: shuffled batches of `batch_size`). Callbacks get epoch-level
    hooks (`on_epoch_begin/end`, `on_train_begin/end`); `logs` hold the three losses. `verbose`: 0 quiet;
    1 one line for the first three epochs, every tenth and the last (every epoch if there are at most 20);
    2 one line every epoch. Side effects on the process: `keras.utils.set_random_seed(seed)` and
    `tf.config.experimental.enable_op_determinism()`.
    """
    images = _check_images(images)
    chief = _is_chief(strategy)
    if chief:
        run_dir = check_writable(run_dir)  # a read-only or full disk fails now, not after training
    run_dir = Path(run_dir)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    model_path, history_path, checkpoint_path = (run_dir / MODEL_FILE, run_dir / HISTORY_FILE,
                                                 run_dir / CHECKPOINT_FILE)
    settings = _settings(images, latent_dim, batch_size, learning_rate, seed, batches)
    if batches is None:
        batches = shuffled_batches(len(images), batch_size)
    say = print if verbose else (lambda *args, **kwargs: None)

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()  # same seed on CPU -> same weights

    if retrain and chief:
        for path in (checkpoint_path, model_path, history_path):
            path.unlink(missing_ok=True)
    epoch_seconds: list[float] = []
    with scope:  # variables (and the optimizer's) made in the scope are mirrored on every replica
        if not retrain and checkpoint_path.exists():
            vae, start_epoch, history = _load_checkpoint(checkpoint_path, settings)
            if history_path.exists():
                epoch_seconds = _read_history(history_path).get("epoch_seconds", [])[:start_epoch]
            say(f"Resuming from {checkpoint_path} after epoch {start_epoch}.")
        elif not retrain and model_path.exists():
            record = _read_history(history_path)
            if not record.get("finished"):
                raise ValueError(f"{history_path} describes an unfinished run but {checkpoint_path.name} is "
                                 "missing: set retrain=True (RETRAIN = True in notebook 02) to train again.")
            _check_same_settings(record["settings"], settings, history_path)
            start_epoch, history, epoch_seconds = record["epochs"], record["history"], record["epoch_seconds"]
            if start_epoch > epochs:
                raise RunMismatch(f"{model_path} was trained for {start_epoch} epochs, more than the {epochs} "
                                  "asked: set retrain=True (RETRAIN = True in notebook 02) to train again.")
            vae = load_vae(model_path)
            if start_epoch == epochs:
                say(f"Loaded the finished model {model_path} ({start_epoch} epochs); "
                    "set retrain=True to train again.")
                return vae, history
            say(f"Continuing {model_path} from epoch {start_epoch} to {epochs}.")
        else:
            vae = _new_compiled_vae(settings)
            start_epoch, history = 0, {key: [] for key in LOSS_KEYS}
            if chief:
                _save_checkpoint(checkpoint_path, vae, 0, history, settings)  # so even epoch 1 can fall back

        writer = _CheckpointWriter() if chief else _NoWriter()
        try:
            _train_epochs(vae, images, start_epoch, epochs, batches, seed, history, epoch_seconds, settings,
                          checkpoint_path, history_path, writer, callbacks, say, verbose, strategy)
        except BaseException:
            writer.wait(quiet=True)  # on an interruption too, the last checkpoint reaches the disk whole
            raise
        writer.wait()

    if not chief:
        return vae, history
    _write_history(history_path, history, settings, epoch_seconds, finished=True)
    _save_model(model_path, vae)
    checkpoint_path.unlink(missing_ok=True)
    say(f"Saved {model_path} and {history_path} ({len(history['loss'])} epochs, "
        f"{sum(epoch_seconds):.1f} s of training).")
    return vae, history
