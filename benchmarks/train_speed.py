"""Time the paper's training (80 images, 100 epochs, minibatch 10, RMSprop 2e-3): train_vae vs
keras.io.

The reference is the keras.io "Variational AutoEncoder" example (the paper's reference [15]) as
written there for Keras 3: a Model subclass with a GradientTape `train_step`, trained by
`model.fit`. Both run in this one process, alternately, on the same images, so machine load affects
them alike; wall time and the process's CPU time are both reported (CPU time is less sensitive to
other users of the machine). Usage: python benchmarks/train_speed.py [--epochs 100] [--image-size
64] [--repeats 2]

`--guard-cost` times instead the NaN guard alone: train_vae's compiled step with the guard (loss,
gradients and every state variable checked after each update) against the same step without it, in
one process, alternating blocks of one epoch's steps, wall and CPU time per step.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from vae_overlay import checkpoint, runs
from vae_overlay.train import make_train_step, run_settings, train_vae

ROOT = Path(__file__).resolve().parents[1]


# ---- keras.io reference (examples/generative/vae.py), image size and optimizer as in the paper
# ----


class Sampling(layers.Layer):
    """Uses (z_mean, z_log_var) to sample z, the vector encoding a digit."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch = ops.shape(z_mean)[0]
        dim = ops.shape(z_mean)[1]
        epsilon = keras.random.normal(shape=(batch, dim), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def reference_models(image_size, latent_dim=2):
    encoder_inputs = keras.Input(shape=(image_size, image_size, 1))
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling()([z_mean, z_log_var])
    encoder = keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")

    side = image_size // 4
    latent_inputs = keras.Input(shape=(latent_dim,))
    x = layers.Dense(side * side * 64, activation="relu")(latent_inputs)
    x = layers.Reshape((side, side, 64))(x)
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    decoder_outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
    decoder = keras.Model(latent_inputs, decoder_outputs, name="decoder")
    return encoder, decoder


class ReferenceVAE(keras.Model):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss = ops.mean(
                ops.sum(keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2))
            )
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {
            "loss": self.total_loss_tracker.result(),
            "reconstruction_loss": self.reconstruction_loss_tracker.result(),
            "kl_loss": self.kl_loss_tracker.result(),
        }


def run_reference(images, epochs, batch_size, learning_rate, seed):
    """Seconds for model building + model.fit, and the final epoch's loss."""
    start = time.perf_counter()
    runs.seed_everything(seed)
    vae = ReferenceVAE(*reference_models(images.shape[1]))
    vae.compile(optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate))
    history = vae.fit(images, epochs=epochs, batch_size=batch_size, verbose=0)
    return time.perf_counter() - start, history.history["loss"][-1]


def run_ours(images, epochs, batch_size, learning_rate, seed):
    """Seconds for train_vae from scratch (checkpoint every epoch, final save included), final
    loss."""
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        _, history = train_vae(
            images,
            run_dir,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            verbose=0,
        )
        return time.perf_counter() - start, history["loss"][-1]


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): less sensitive to other users than wall
    time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_images(image_size, count=80):
    path = ROOT / "artifacts" / "elpv-cracks" / "dataset.npz"
    if path.is_file():
        with np.load(path) as data:
            images = data["images"].astype(np.float32)
        if images.shape[1] == image_size:
            return images[:count], f"{path.relative_to(ROOT)} ({len(images[:count])} images)"
    rng = np.random.default_rng(0)
    noise = rng.random((count, image_size, image_size, 1), dtype=np.float32)
    return (
        noise,
        f"synthetic uniform noise ({count} images; no {path.relative_to(ROOT)} at {image_size} px)",
    )


def guard_cost(images, epochs, batch_size, repeats):
    """Seconds (wall, CPU) per step of the guarded and the unguarded step, each on its own model
    with the same settings, alternating blocks of one epoch's minibatches so that machine load
    affects both alike."""
    settings = run_settings(images, batch_size=batch_size)
    batches = [tf.constant(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    steps = {}
    for guard in (True, False):
        vae = checkpoint.new_vae(settings, images)
        steps[guard] = make_train_step(vae, guard=guard)
        for batch in batches:  # trace and warm up (one untimed epoch) before timing
            steps[guard](batch).numpy()
    spent = {guard: [0.0, 0.0, 0] for guard in steps}
    for block in range(epochs * repeats):
        for guard in (True, False) if block % 2 == 0 else (False, True):
            wall, cpu = time.perf_counter(), cpu_seconds()
            for batch in batches:
                steps[guard](batch).numpy()
            spent[guard][0] += time.perf_counter() - wall
            spent[guard][1] += cpu_seconds() - cpu
            spent[guard][2] += len(batches)
    for guard, (wall, cpu, count) in spent.items():
        print(
            f"  {'with' if guard else 'without'} the guard: {1000 * wall / count:6.2f} ms wall, "
            f"{1000 * cpu / count:6.2f} ms CPU per step ({count} steps)"
        )
    print(
        f"ratio with/without the guard: wall {spent[True][0] / spent[False][0]:.3f}, "
        f"CPU {spent[True][1] / spent[False][1]:.3f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="paper: 100")
    parser.add_argument("--image-size", type=int, default=64, help="notebook default: 64")
    parser.add_argument("--batch-size", type=int, default=10, help="paper: 10")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating order")
    parser.add_argument(
        "--guard-cost", action="store_true", help="time the NaN guard alone (see above)"
    )
    args = parser.parse_args()

    # train_vae switches op determinism on for the whole process; switch it on first, so that every
    # run, the reference's included, runs under the same settings whatever the order.
    runs.seed_everything(deterministic=True)
    images, source = load_images(args.image_size)
    print(
        f"{datetime.date.today()}  {platform.node()}  {os.cpu_count()} CPU cores  "
        f"TF {tf.__version__}  Keras {keras.__version__}"
    )
    print(
        f"data: {source}, {args.image_size} px; {args.epochs} epochs, minibatch {args.batch_size}"
    )
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    if args.guard_cost:
        guard_cost(images, args.epochs, args.batch_size, args.repeats)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        return
    times = {"reference": [], "ours": []}
    cpu = {"reference": [], "ours": []}
    for repeat in range(args.repeats):
        order = [("reference", run_reference), ("ours", run_ours)]
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            cpu_start = cpu_seconds()
            seconds, loss = run(images, args.epochs, args.batch_size, 2e-3, 42)
            cpu[name].append(cpu_seconds() - cpu_start)
            times[name].append(seconds)
            print(
                f"  {name:9s} run {repeat + 1}: {seconds:7.1f} s wall, {cpu[name][-1]:7.1f} s CPU  "
                f" final loss {loss:.2f}",
                flush=True,
            )
    best = {name: min(values) for name, values in times.items()}
    total = {name: sum(values) for name, values in times.items()}
    total_cpu = {name: sum(values) for name, values in cpu.items()}
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"best of {args.repeats}: reference {best['reference']:.1f} s, ours {best['ours']:.1f} s")
    print(
        f"ratio ours/reference: wall best {best['ours'] / best['reference']:.2f}, "
        f"wall total {total['ours'] / total['reference']:.2f}, "
        f"CPU total {total_cpu['ours'] / total_cpu['reference']:.2f}"
    )


if __name__ == "__main__":
    main()
