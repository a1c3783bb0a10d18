"""The keras.io convolutional VAE (the paper's reference [15]): layers, loss, save and load.

Training lives in `vae_overlay.train`; this module is the model only. The encoder and decoder are
the keras.io example's, with the few options the experiments vary (hidden activation and width,
initial log-variance bias, standardised input); the defaults are the example's, i.e. the paper's
model.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from vae_overlay.runs import atomic_path, check_finite, seed_everything

LOSSES = ("sum", "keras-io-2020")
KERAS_IO_2020_PIXELS = 28 * 28  # the MNIST image area the 2020 example multiplies the mean BCE by


@keras.saving.register_keras_serializable(package="vae_overlay")
class Sampling(layers.Layer):
    """Draws z = z_mean + exp(z_log_var / 2) * epsilon, epsilon ~ N(0, I) (reparameterisation
    trick)."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        # The generator's state is a layer variable, so it is saved and restored with the weights.
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return reparameterize(z_mean, z_log_var, epsilon)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}

    # Keras does not save a SeedGenerator's state by itself; keep it in vae.keras so that training
    # continued from a saved model draws the same noise as an uninterrupted run.
    def save_own_variables(self, store):
        store["seed_generator_state"] = self.seed_generator.state.numpy()

    def load_own_variables(self, store):
        if "seed_generator_state" in store:
            self.seed_generator.state.assign(np.asarray(store["seed_generator_state"]))


def _array_module(values):
    """NumPy for NumPy arrays (kept in their dtype: the diagnostics' float64), else keras.ops."""
    return np if isinstance(values, np.ndarray) else ops


def reparameterize(z_mean, z_log_var, epsilon):
    """z = z_mean + exp(z_log_var / 2) * epsilon, epsilon ~ N(0, I): a draw from the posterior (the
    reparameterisation trick); tensors in `Sampling`, NumPy arrays in the diagnostics."""
    return z_mean + _array_module(z_log_var).exp(0.5 * z_log_var) * epsilon


def kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, 1)) per latent dimension (element-wise): the loss term
    on tensors; on NumPy arrays (in their dtype) the diagnostics' KL per source."""
    xp = _array_module(z_log_var)
    return -0.5 * (1.0 + z_log_var - xp.square(z_mean) - xp.exp(z_log_var))


def _check_sizes(image_size: int, latent_dim: int) -> None:
    if image_size < 4 or image_size % 4:
        raise ValueError(
            f"image_size must be a multiple of 4 (two stride-2 layers), got {image_size}"
        )
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")


def build_encoder(
    image_size: int = 64,
    latent_dim: int = 2,
    seed: int | None = None,
    *,
    activation: str = "relu",
    dense_units: int = 16,
    log_var_bias: float = 0.0,
    standardize_with=None,
) -> keras.Model:
    """Encoder image -> [z_mean, z_log_var, z], as in the keras.io VAE example.

    Options (defaults: the example's): `activation` and `dense_units` of the hidden Dense layer,
    `log_var_bias` (initial bias of z_log_var), `standardize_with` (images: the input is
    standardised per pixel with their mean and variance, a Keras Normalization layer saved with the
    model).
    """
    _check_sizes(image_size, latent_dim)
    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    x = inputs
    if standardize_with is not None:
        normalize = layers.Normalization(axis=(1, 2, 3), name="standardize")
        normalize.adapt(np.asarray(standardize_with, np.float32))
        x = normalize(x)
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same", name="conv_1")(x)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same", name="conv_2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation=activation, name="dense")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    bias = "zeros" if log_var_bias == 0 else keras.initializers.Constant(log_var_bias)
    z_log_var = layers.Dense(latent_dim, name="z_log_var", bias_initializer=bias)(x)
    z = Sampling(seed=seed, name="z")([z_mean, z_log_var])
    return keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")


def build_decoder(image_size: int = 64, latent_dim: int = 2) -> keras.Model:
    """Decoder z -> image with pixel values in (0, 1), as in the keras.io VAE example."""
    _check_sizes(image_size, latent_dim)
    side = image_size // 4
    latent_inputs = keras.Input(shape=(latent_dim,), name="z")
    x = layers.Dense(side * side * 64, activation="relu", name="dense")(latent_inputs)
    x = layers.Reshape((side, side, 64), name="reshape")(x)
    x = layers.Conv2DTranspose(
        64, 3, activation="relu", strides=2, padding="same", name="deconv_1"
    )(x)
    x = layers.Conv2DTranspose(
        32, 3, activation="relu", strides=2, padding="same", name="deconv_2"
    )(x)
    decoder_outputs = layers.Conv2DTranspose(
        1, 3, activation="sigmoid", padding="same", name="image"
    )(x)
    return keras.Model(latent_inputs, decoder_outputs, name="decoder")


@keras.saving.register_keras_serializable(package="vae_overlay")
class VAE(keras.Model):
    """Encoder + decoder and the loss they are trained on (`loss`, one of LOSSES; see
    `loss_terms`)."""

    def __init__(self, encoder, decoder, loss: str = "sum", **kwargs):
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.encoder = encoder
        self.decoder = decoder
        self.loss_name = loss
        # Encoder and decoder are functional models, built on creation; marking the VAE built lets
        # Keras save it and rebuild the optimizer (and restore its state) when loading.
        self.built = True

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
        """Per-image reconstruction loss (batch,) and KL per latent dimension (batch, latent_dim).

        `"sum"` (the keras.io example since 2021, and this project's default): binary cross-entropy
        summed over the pixels. `"keras-io-2020"`: the example as first published (keras-io,
        examples/generative/vae.py, created 2020/05/03, F. Chollet), which a 2021 paper citing it
        most likely copied: `reduce_mean(binary_crossentropy(data, reconstruction)) * 28 * 28`, i.e.
        the mean BCE per pixel times MNIST's 784 pixels whatever the image size. Use `reduce_kl` for
        the KL of each image.
        """
        z_mean, z_log_var, z = self.encoder(data, training=training)
        bce = keras.losses.binary_crossentropy(data, self.decoder(z, training=training))
        if self.loss_name == "sum":
            reconstruction = ops.sum(bce, axis=(1, 2))
        else:
            reconstruction = ops.mean(bce, axis=(1, 2)) * KERAS_IO_2020_PIXELS
        return reconstruction, kl_divergence(z_mean, z_log_var)

    def reduce_kl(self, kl):
        """KL per image from KL per dimension: summed (`"sum"`) or, as the 2020 example's `-0.5 *
        reduce_mean(1 + z_log_var - z_mean^2 - exp(z_log_var))`, averaged over the dimensions."""
        return ops.sum(kl, axis=-1) if self.loss_name == "sum" else ops.mean(kl, axis=-1)

    def compute_losses(self, data, training=False):
        """(reconstruction_loss, kl_loss) of a batch: per-image losses averaged over the batch."""
        reconstruction, kl = self.loss_terms(data, training=training)
        return ops.mean(reconstruction), ops.mean(self.reduce_kl(kl))

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "loss": self.loss_name,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(
            config.pop("encoder"), custom_objects=custom_objects
        )
        decoder = keras.saving.deserialize_keras_object(
            config.pop("decoder"), custom_objects=custom_objects
        )
        return cls(encoder, decoder, **config)


def build_vae(
    image_size: int = 64,
    latent_dim: int = 2,
    seed: int | None = 42,
    loss: str = "sum",
    **encoder_options,
) -> VAE:
    """A new, untrained VAE; with a seed, initial weights and sampling noise are reproducible.

    `encoder_options`: those of `build_encoder` (activation, dense_units, log_var_bias,
    standardize_with).
    """
    seed_everything(seed)
    encoder = build_encoder(image_size, latent_dim, seed=seed, **encoder_options)
    decoder = build_decoder(image_size, latent_dim)
    return VAE(encoder, decoder, loss=loss, name="vae")


RETRAIN_NOTE = "Delete it, or train it again (train.train_vae with retrain=True)."


class ModelMissing(FileNotFoundError):
    """No saved VAE where one was expected (`config.advised` says which notebook trains it)."""


class ModelUnusable(ValueError):
    """A saved file that cannot be loaded as a VAE, with the facts (`config.advised` adds what to do
    in the notebooks)."""


def _named_weights(vae) -> list:
    return [(weight.path, weight.numpy()) for weight in vae.weights]


def save_vae(path: str | Path, vae: VAE) -> Path:
    """Save to a temporary `.keras` file beside `path`, fsync, then rename over `path` (atomic). A
    model with NaN or infinite weights is refused (runs.NonFiniteState) and nothing is written."""
    check_finite(
        _named_weights(vae),
        path,
        "refusing to write a model",
        "The training that made it diverged: train it again (a lower learning rate may help).",
    )
    with atomic_path(path, suffix=".keras") as tmp:
        vae.save(tmp)
    return Path(path)


def load_vae(path: str | Path) -> VAE:
    """Load a saved VAE with safe_mode=True (no code from the file runs); says what to do if it
    fails."""
    path = Path(path)
    if not path.is_file():
        raise ModelMissing(f"{path} not found: no trained VAE there (train.train_vae saves one).")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # corrupt zip, truncated weights, foreign classes, ...
        reason = f"{type(error).__name__}: {error}"
        message = f"{path} could not be loaded as a VAE ({reason}). {RETRAIN_NOTE}"
        raise ModelUnusable(message) from error
    if not isinstance(model, VAE):
        raise ModelUnusable(
            f"{path} holds a {type(model).__name__}, not a vae_overlay VAE. {RETRAIN_NOTE}"
        )
    check_finite(
        _named_weights(model), path, "not loaded", f"Its training diverged. {RETRAIN_NOTE}"
    )
    return model


def encode(encoder, images, batch_size: int = 256, dtype=np.float32) -> tuple:
    """(z_mean, z_log_var) of every image, each (n, latent_dim) in `dtype`, in batches: the one
    encode path. Takes the encoder or the whole VAE, and an array or anything sliceable to arrays
    (a stream.ImageStream is read a batch at a time)."""
    if isinstance(encoder, VAE):
        encoder = encoder.encoder
    if isinstance(images, (np.ndarray, list)):
        images = np.asarray(images, dtype=np.float32)
    empty = np.zeros((0, int(encoder.outputs[0].shape[-1])))  # no images: (0, latent_dim)
    batches = [
        encoder(images[start : start + batch_size], training=False)[:2]
        for start in range(0, len(images), batch_size)
    ] or [(empty, empty)]
    parts = [[np.asarray(batch[i], dtype) for batch in batches] for i in (0, 1)]
    return np.concatenate(parts[0]), np.concatenate(parts[1])


def encode_mean(encoder, images, batch_size: int = 256) -> np.ndarray:
    """z_mean of every image (n, latent_dim) float32: `encode`'s first half."""
    return encode(encoder, images, batch_size)[0]
