"""The VAE of model.py against independent references: closed forms, numpy, saved copies."""

import json
import zipfile

import keras
import numpy as np
import pytest
from scipy import integrate, stats

from vae_overlay import model, train


def test_kl_matches_closed_form_and_numerical_integral():
    rng = np.random.default_rng(1)
    z_mean = rng.normal(0, 2, (50, 3)).astype(np.float32)
    z_log_var = rng.normal(0, 1, (50, 3)).astype(np.float32)
    variance = np.exp(z_log_var.astype(np.float64))
    closed_form = 0.5 * (variance + z_mean.astype(np.float64) ** 2 - 1 - np.log(variance))
    as_tensors = (keras.ops.convert_to_tensor(z_mean), keras.ops.convert_to_tensor(z_log_var))
    np.testing.assert_allclose(
        np.asarray(model.kl_divergence(*as_tensors)), closed_form, rtol=1e-5, atol=1e-6
    )
    # NumPy arrays (the diagnostics' KL per source) are computed in their own dtype
    in_float64 = model.kl_divergence(z_mean.astype(np.float64), z_log_var.astype(np.float64))
    assert in_float64.dtype == np.float64
    np.testing.assert_allclose(in_float64, closed_form, rtol=1e-12, atol=1e-12)
    # One entry by integrating p log(p/q) numerically, independent of any formula.
    mean, std = float(z_mean[0, 0]), float(np.sqrt(variance[0, 0]))
    p, q = stats.norm(mean, std), stats.norm(0, 1)
    integral, _ = integrate.quad(
        lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), mean - 12 * std, mean + 12 * std
    )
    assert float(model.kl_divergence(z_mean, z_log_var)[0, 0]) == pytest.approx(integral, rel=1e-5)


def test_sampling_has_the_requested_mean_and_variance():
    n = 200_000
    mean, log_var = (
        np.array([1.5, -2.0], np.float32),
        np.array([np.log(4.0), np.log(0.25)], np.float32),
    )
    layer = model.Sampling(seed=7)
    z = np.asarray(layer([np.tile(mean, (n, 1)), np.tile(log_var, (n, 1))])).astype(np.float64)
    std = np.exp(0.5 * log_var.astype(np.float64))
    # Five standard errors: the mean's is std/sqrt(n), the variance's is var*sqrt(2/n).
    np.testing.assert_array_less(np.abs(z.mean(axis=0) - mean), 5 * std / np.sqrt(n))
    np.testing.assert_array_less(np.abs(z.var(axis=0) - std**2), 5 * std**2 * np.sqrt(2 / n))
    assert abs(np.corrcoef(z.T)[0, 1]) < 5 / np.sqrt(n)
    # Seeded: a new layer with the same seed repeats the draws; the next call draws new noise.
    again = np.asarray(model.Sampling(seed=7)([np.tile(mean, (n, 1)), np.tile(log_var, (n, 1))]))
    np.testing.assert_array_equal(again, z.astype(np.float32))
    assert not np.array_equal(
        np.asarray(layer([mean[None], log_var[None]])), z[:1].astype(np.float32)
    )


def test_reparameterize_is_one_formula_for_tensors_and_arrays():
    rng = np.random.default_rng(4)
    z_mean, z_log_var, epsilon = rng.normal(0, 1, (3, 20, 2))
    expected = z_mean + np.sqrt(np.exp(z_log_var)) * epsilon
    in_float64 = model.reparameterize(z_mean, z_log_var, epsilon)
    assert in_float64.dtype == np.float64
    np.testing.assert_allclose(in_float64, expected, rtol=1e-12)
    tensors = [keras.ops.convert_to_tensor(np.float32(a)) for a in (z_mean, z_log_var, epsilon)]
    from_tensors = np.asarray(model.reparameterize(*tensors))
    np.testing.assert_allclose(from_tensors, expected, rtol=1e-5, atol=1e-6)


def test_architecture_is_the_keras_io_example():
    encoder, decoder = model.build_encoder(64, 2), model.build_decoder(64, 2)
    assert encoder.name == "encoder" and decoder.name == "decoder"
    assert [tuple(o.shape) for o in encoder.outputs] == [(None, 2)] * 3
    assert tuple(decoder.outputs[0].shape) == (None, 64, 64, 1)
    convs = [
        (type(layer).__name__, layer.filters, layer.strides, layer.activation.__name__)
        for layer in encoder.layers + decoder.layers
        if hasattr(layer, "filters")
    ]
    assert convs == [
        ("Conv2D", 32, (2, 2), "relu"),
        ("Conv2D", 64, (2, 2), "relu"),
        ("Conv2DTranspose", 64, (2, 2), "relu"),
        ("Conv2DTranspose", 32, (2, 2), "relu"),
        ("Conv2DTranspose", 1, (1, 1), "sigmoid"),
    ]
    # Parameter counts from the layer formulas (kernel 3x3, 16 px maps after two stride-2 convs).
    encoder_count = (
        (9 * 1 * 32 + 32) + (9 * 32 * 64 + 64) + (16 * 16 * 64 * 16 + 16) + 2 * (16 * 2 + 2)
    )
    decoder_count = (
        (2 * 16 * 16 * 64 + 16 * 16 * 64) + (9 * 64 * 64 + 64) + (9 * 64 * 32 + 32) + (9 * 32 + 1)
    )
    counts = (encoder.count_params(), decoder.count_params())
    assert counts == (encoder_count, decoder_count) == (281_044, 104_833)


@pytest.mark.parametrize("size", [0, 30, 62])
def test_image_size_must_be_a_multiple_of_four(size):
    with pytest.raises(ValueError, match="multiple of 4"):
        model.build_encoder(size)


def test_losses_match_numpy(crack_images):
    vae = model.build_vae(16, 2, seed=3)
    images = crack_images(6)
    sampler = vae.encoder.get_layer("z").seed_generator
    state = sampler.state.numpy()
    reconstruction_loss, kl_loss = (float(v) for v in vae.compute_losses(images))
    sampler.state.assign(state)  # the same noise again, so the same z
    z_mean, z_log_var, z = (np.asarray(t, np.float64) for t in vae.encoder(images))
    p = np.clip(np.asarray(vae.decoder(z.astype(np.float32)), np.float64), 1e-7, 1 - 1e-7)
    x = images.astype(np.float64)
    bce = -(x * np.log(p) + (1 - x) * np.log(1 - p))
    assert reconstruction_loss == pytest.approx(bce.sum(axis=(1, 2, 3)).mean(), rel=1e-5)
    kl = 0.5 * (np.exp(z_log_var) + z_mean**2 - 1 - z_log_var)
    assert kl_loss == pytest.approx(kl.sum(axis=1).mean(), rel=1e-5, abs=1e-7)


def test_save_load_round_trip_gives_identical_outputs(tmp_path, crack_images):
    vae = model.build_vae(16, 2, seed=11)
    vae.compile(optimizer=keras.optimizers.RMSprop(2e-3))
    vae.optimizer.build(vae.trainable_variables)
    images = crack_images(5)
    train.make_train_step(vae)(images)  # non-initial weights and optimizer state
    path = model.save_vae(tmp_path / "vae.keras", vae)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae.keras"]  # no temporary file left
    with zipfile.ZipFile(path) as archive:
        assert "lambda" not in archive.read("config.json").decode().lower()
    loaded = model.load_vae(path)
    assert isinstance(loaded, model.VAE) and loaded.encoder.name == "encoder"
    # z too: the seed state is saved
    for original, copy in zip(vae.encoder(images), loaded.encoder(images)):
        np.testing.assert_array_equal(np.asarray(original), np.asarray(copy))
    z = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(vae.decoder(z)), np.asarray(loaded.decoder(z)))
    for original, copy in zip(vae.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(original.numpy(), copy.numpy())
    # The plain Keras loader accepts it in safe mode as well (no lambdas, registered classes).
    assert isinstance(keras.saving.load_model(path, safe_mode=True), model.VAE)


def test_load_vae_names_the_file_and_what_to_do(tmp_path):
    missing = tmp_path / "nothing" / "vae.keras"
    with pytest.raises(model.ModelMissing, match=r"nothing.*not found"):
        model.load_vae(missing)
    corrupt = tmp_path / "vae.keras"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(model.ModelUnusable, match=r"vae\.keras.*retrain=True"):
        model.load_vae(corrupt)
    other = tmp_path / "other.keras"
    model.build_encoder(16).save(other)
    with pytest.raises(ValueError, match="not a vae_overlay VAE"):
        model.load_vae(other)


def test_encode_mean_matches_the_encoder_in_any_batch_size(crack_images):
    vae = model.build_vae(16, 3, seed=2)
    images = crack_images(9)
    expected = np.asarray(vae.encoder(images)[0])
    for batch_size in (2, 4, 256):
        np.testing.assert_allclose(
            model.encode_mean(vae.encoder, images, batch_size), expected, atol=1e-6
        )
    assert model.encode_mean(vae, images[:0]).shape == (0, 3)


def test_encode_gives_means_and_log_variances_in_any_batch_size_and_dtype(crack_images):
    vae = model.build_vae(16, 3, seed=2)
    images = crack_images(9)
    z_mean, z_log_var, _ = (np.asarray(output) for output in vae.encoder(images))
    for batch_size in (2, 256):
        means, log_vars = model.encode(vae, images, batch_size)
        assert means.dtype == log_vars.dtype == np.float32
        np.testing.assert_allclose(means, z_mean, atol=1e-6)
        np.testing.assert_allclose(log_vars, z_log_var, atol=1e-6)
    means, log_vars = model.encode(vae.encoder, images, dtype=np.float64)
    assert means.dtype == log_vars.dtype == np.float64
    np.testing.assert_array_equal(log_vars, model.encode(vae, images)[1].astype(np.float64))
    assert [part.shape for part in model.encode(vae, images[:0])] == [(0, 3), (0, 3)]


def test_config_round_trip_keeps_seed_and_sizes():
    vae = model.build_vae(32, 3, seed=9)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(vae)))
    copy = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert (copy.image_size, copy.latent_dim) == (32, 3)
    assert copy.encoder.get_layer("z").seed == 9


def test_encoder_options_build_what_they_say(crack_images):
    images = crack_images(8)
    encoder = model.build_encoder(
        16, 3, activation="leaky_relu", dense_units=8, log_var_bias=-6.0, standardize_with=images
    )
    assert (
        encoder.get_layer("dense").units == 8
        and encoder.get_layer("dense").activation.__name__ == "leaky_relu"
    )
    np.testing.assert_array_equal(
        encoder.get_layer("z_log_var").bias.numpy(), np.full(3, -6.0, np.float32)
    )
    standardized = np.asarray(encoder.get_layer("standardize")(images))
    assert abs(standardized.mean()) < 1e-4 and standardized.std() == pytest.approx(1.0, abs=0.02)
