"""train.train_vae: loss bookkeeping, determinism, resuming, loading a finished model, the NaN
guard, the KL weight, the loss versions, optimizers and encoder options."""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from vae_overlay import checkpoint, model, runs, train

SETTINGS = dict(latent_dim=2, epochs=4, batch_size=8, learning_rate=2e-3, seed=3, verbose=0)


class Interrupt(Exception):
    """Stands in for a killed kernel."""


class StopAfter(keras.callbacks.Callback):
    """Raises Interrupt at the end of epoch index `epoch` (after its checkpoint is written)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Interrupt(f"stopped after epoch {epoch + 1}")


class CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


def weights_of(vae):
    return [v.numpy() for v in list(vae.variables) + list(vae.optimizer.variables)]


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def images(crack_images):
    return crack_images(24)


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    """One uninterrupted 4-epoch run that the other tests compare with."""
    run_dir = tmp_path_factory.mktemp("reference")
    vae, history = train.train_vae(images, run_dir, **SETTINGS)
    return run_dir, weights_of(vae), history


def test_history_has_every_epoch_and_loss_is_reconstruction_plus_kl(reference):
    run_dir, _, history = reference
    assert sorted(history) == ["kl_loss", "loss", "reconstruction_loss"]
    assert all(len(values) == 4 and np.isfinite(values).all() for values in history.values())
    for total, reconstruction, kl in zip(
        history["loss"], history["reconstruction_loss"], history["kl_loss"]
    ):
        assert total == pytest.approx(reconstruction + kl, rel=1e-12)
    assert history["loss"][-1] < history["loss"][0]  # it learns something
    record = json.loads((run_dir / "history.json").read_text())
    assert record["epochs"] == 4 and record["finished"] and record["history"] == history
    assert sorted(p.name for p in run_dir.iterdir()) == ["history.json", "vae.keras"]


def test_same_seed_gives_identical_weights_and_another_seed_does_not(images, reference, tmp_path):
    vae, history = train.train_vae(images, tmp_path / "again", **SETTINGS)
    assert_same_weights(weights_of(vae), reference[1])
    assert history == reference[2]
    other, _ = train.train_vae(images, tmp_path / "other", **{**SETTINGS, "seed": 4, "epochs": 1})
    assert not np.array_equal(weights_of(other)[0], reference[1][0])


def test_interrupted_run_resumes_to_the_uninterrupted_result(images, reference, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupt):
        train.train_vae(images, run_dir, **SETTINGS, callbacks=[StopAfter(1)])
    assert not (run_dir / "vae.keras").exists()
    assert json.loads((run_dir / "history.json").read_text())["epochs"] == 2
    counter = CountEpochs()
    vae, history = train.train_vae(
        images, run_dir, **{**SETTINGS, "verbose": 1}, callbacks=[counter]
    )
    assert "Resuming" in capsys.readouterr().out
    assert counter.epochs == [2, 3]  # only the missing epochs ran
    assert history == reference[2]  # every epoch exactly once, same values
    assert_same_weights(weights_of(vae), reference[1])
    assert not (run_dir / "checkpoint.npz").exists()


def test_finished_model_is_loaded_not_retrained_unless_asked(images, reference, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(reference[0], run_dir)
    modified = os.stat(run_dir / "vae.keras").st_mtime_ns
    counter = CountEpochs()
    vae, history = train.train_vae(images, run_dir, **SETTINGS, callbacks=[counter])
    assert counter.epochs == [] and history == reference[2]
    assert os.stat(run_dir / "vae.keras").st_mtime_ns == modified
    assert_same_weights(weights_of(vae), reference[1])
    vae, history = train.train_vae(images, run_dir, **SETTINGS, retrain=True, callbacks=[counter])
    assert counter.epochs == [0, 1, 2, 3]
    assert history == reference[2]  # deterministic, so retraining gives the same model again


def test_more_epochs_continue_the_finished_model_exactly(images, reference, tmp_path):
    run_dir = tmp_path / "continued"
    shutil.copytree(reference[0], run_dir)
    continued, history = train.train_vae(images, run_dir, **{**SETTINGS, "epochs": 6})
    assert history["loss"][:4] == reference[2]["loss"] and len(history["loss"]) == 6
    direct, direct_history = train.train_vae(
        images, tmp_path / "direct", **{**SETTINGS, "epochs": 6}
    )
    assert history == direct_history
    assert_same_weights(weights_of(continued), weights_of(direct))


def test_other_settings_or_data_are_refused(images, reference, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(reference[0], run_dir)
    with pytest.raises(runs.RunMismatch, match=r"batch_size=8 \(this call: 5\).*retrain=True"):
        train.train_vae(images, run_dir, **{**SETTINGS, "batch_size": 5})
    with pytest.raises(runs.RunMismatch, match="images_sha256"):
        train.train_vae(images[:-1], run_dir, **SETTINGS)
    with pytest.raises(runs.RunMismatch, match=r"epochs=4 \(this call: 2\)"):
        train.train_vae(images, run_dir, **{**SETTINGS, "epochs": 2})


# ---- the NaN guard: NaN injected into the weights, the loss or the gradients at a known step. None
# of these relies on how a kernel passes NaN on (a fused Conv2D + ReLU turns it into 0 on some
# CPUs): the guard reads the loss, the gradients and the variables themselves.


class PoisonVariable(keras.callbacks.Callback):
    """Writes NaN into one state variable after epoch index `epoch` (after its checkpoint is
    written): the first encoder kernel, or the optimizer's moment of the decoder's last kernel (a
    variable that no forward pass reads, so only a guard on the state can see it)."""

    def __init__(self, epoch, target):
        super().__init__()
        self.epoch, self.target = epoch, target

    def on_epoch_end(self, epoch, logs=None):
        if epoch != self.epoch:
            return
        if self.target == "weights":
            variable = self.model.encoder.get_layer("conv_1").kernel
        else:
            variable = [
                v for v in self.model.optimizer.variables if "float" in str(v.dtype) and v.ndim == 4
            ][-1]
        variable.assign(np.full(variable.shape, np.nan, np.float32))


def poison_step(monkeypatch, at_step: int, target: str) -> None:
    """Make the VAE's loss ("loss") or its gradients ("gradients", the loss itself finite) NaN at
    optimizer step `at_step` (0-based), and exact everywhere else (x + 0 and dy * 1)."""
    original = model.VAE.loss_terms

    def loss_terms(self, data, training=False):
        reconstruction, kl = original(self, data, training=training)
        hit = tf.equal(self.optimizer.iterations, at_step)
        if target == "loss":
            return reconstruction + tf.stop_gradient(tf.where(hit, np.float32(np.nan), 0.0)), kl

        @tf.custom_gradient
        def nan_gradient(x):
            return tf.identity(x), lambda dy: dy * tf.where(hit, np.float32(np.nan), 1.0)

        return nan_gradient(reconstruction), kl

    monkeypatch.setattr(model.VAE, "loss_terms", loss_terms)


# 24 images in batches of 8: 3 steps an epoch, so step 7 (0-based) is epoch 3, batch 2.
@pytest.mark.parametrize(
    "target, what, epoch, batch",
    [
        ("weights", "state", 3, 1),
        ("optimizer", "state", 3, 1),
        ("loss", "loss", 3, 2),
        ("gradients", "gradients", 3, 2),
    ],
)
def test_nan_anywhere_stops_training_keeps_the_last_good_state_and_resumes_exactly(
    images, reference, tmp_path, monkeypatch, target, what, epoch, batch
):
    run_dir = tmp_path / target
    callbacks = []
    if target in ("weights", "optimizer"):
        callbacks = [PoisonVariable(1, target)]
    else:
        poison_step(monkeypatch, 7, target)
    with pytest.raises(
        train.TrainingDiverged,
        match=rf"{what}\b.* became .*at epoch {epoch}, batch {batch}\b"
        rf".*after epoch {epoch - 1}",
    ) as caught:
        train.train_vae(images, run_dir, **SETTINGS, callbacks=callbacks)
    assert (caught.value.epoch, caught.value.batch, caught.value.what) == (epoch, batch, what)
    assert not (run_dir / "vae.keras").exists()
    with np.load(run_dir / "checkpoint.npz") as stored:
        assert json.loads(str(stored["meta"]))["epoch"] == epoch - 1
        assert all(np.isfinite(stored[name]).all() for name in stored.files if name != "meta")
    assert json.loads((run_dir / "history.json").read_text())["finished"] is False
    # The state on disk is the good one: resuming from it ends exactly where the clean run ended.
    monkeypatch.undo()
    vae, history = train.train_vae(images, run_dir, **SETTINGS)
    assert history == reference[2]
    assert_same_weights(weights_of(vae), reference[1])


def test_the_step_reports_nonfinite_state_whatever_the_loss_says(images):
    """A NaN in a variable the forward pass multiplies by zero leaves the loss finite: the step
    still says so."""
    vae = checkpoint.new_vae(train.run_settings(images), images)
    step = train.make_train_step(vae)
    clean = step(images[:8]).numpy()
    assert (
        clean.shape == (len(train.STEP_COLUMNS),)
        and np.isfinite(clean).all()
        and (clean[2:] == 0).all()
    )
    velocity = [v for v in vae.optimizer.variables if "float" in str(v.dtype) and v.ndim == 4][-1]
    velocity.assign(np.full(velocity.shape, np.inf, np.float32))
    row = step(images[:8]).numpy()
    assert np.isfinite(row[:2]).all() and row[3] >= 1


def test_nonfinite_models_and_checkpoints_are_never_written_nor_loaded(images, reference, tmp_path):
    vae = model.load_vae(reference[0] / "vae.keras")
    kernel = vae.decoder.get_layer(index=-1).kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    target = tmp_path / "vae.keras"
    with pytest.raises(
        runs.NonFiniteState,
        match=r"vae\.keras: refusing to write a model: 1 of its arrays.*" r"train it again",
    ):
        model.save_vae(target, vae)
    assert list(tmp_path.iterdir()) == []
    vae.save(tmp_path / "bypassed.keras")  # written around the guard, as by another tool
    with pytest.raises(runs.NonFiniteState, match=r"bypassed\.keras: not loaded: .*retrain=True"):
        model.load_vae(tmp_path / "bypassed.keras")
    # a checkpoint with NaN (written by hand) is refused on resume, naming the file
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupt):
        train.train_vae(images, run_dir, **SETTINGS, callbacks=[StopAfter(0)])
    with np.load(run_dir / "checkpoint.npz") as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["v0000"] = np.full_like(arrays["v0000"], np.nan)
    with open(run_dir / "checkpoint.npz", "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(runs.NonFiniteState, match=r"checkpoint\.npz: not resumed.*retrain=True"):
        train.train_vae(images, run_dir, **SETTINGS)
    with pytest.raises(runs.NonFiniteState, match="refusing to write a checkpoint"):
        checkpoint.checkpoint_bytes([arrays["v0000"]], 1, {}, {}, run_dir / "checkpoint.npz")


def test_bad_images_are_refused_before_training(images, tmp_path):
    broken = images.copy()
    broken[3, 5, 5, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN/infinite pixels in 1 images"):
        train.train_vae(broken, tmp_path, **SETTINGS)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train.train_vae(images * 255, tmp_path, **SETTINGS)
    with pytest.raises(ValueError, match=r"\(n, size, size, 1\)"):
        train.train_vae(images[..., 0], tmp_path, **SETTINGS)


def test_custom_batches_are_used_with_uneven_sizes(images, tmp_path):
    calls = []

    def every_batch_holds_image_zero(epoch, rng):
        calls.append(epoch)
        order = rng.permutation(np.arange(1, len(images)))
        # 11, 11, 4 images
        return [np.r_[0, order[:10]], np.r_[0, order[10:20]], np.r_[0, order[20:]]]

    _, history = train.train_vae(
        images, tmp_path, **{**SETTINGS, "epochs": 2}, batches=every_batch_holds_image_zero
    )
    assert calls == [0, 1]
    assert all(
        t == pytest.approx(r + k, rel=1e-12)
        for t, r, k in zip(history["loss"], history["reconstruction_loss"], history["kl_loss"])
    )
    settings = json.loads((tmp_path / "history.json").read_text())["settings"]
    assert settings["batches"].startswith("custom: ")
    assert "every_batch_holds_image_zero" in settings["batches"]
    with pytest.raises(ValueError, match="outside"):
        train.train_vae(
            images, tmp_path / "bad", **SETTINGS, batches=lambda epoch, rng: [np.array([0, 99])]
        )


def test_model_file_is_replaced_atomically(tmp_path, monkeypatch):
    vae = model.build_vae(16, 2, seed=1)
    target = tmp_path / "vae.keras"
    target.write_bytes(b"previous model")

    def crash_while_writing(self, path, *args, **kwargs):
        with open(path, "wb") as partial:
            partial.write(b"half a model")
        raise Interrupt("killed while saving")

    monkeypatch.setattr(model.VAE, "save", crash_while_writing)
    with pytest.raises(Interrupt):
        model.save_vae(target, vae)
    assert target.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["vae.keras"]


def test_unwritable_run_dir_fails_before_any_training(images, tmp_path):
    (tmp_path / "blocked").write_text("a file where the run folder should be")
    started = []
    callback = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.append(epoch)
    )
    with pytest.raises(runs.DiskError, match="Cannot write to the artifacts folder"):
        train.train_vae(images, tmp_path / "blocked" / "run", **SETTINGS, callbacks=[callback])
    assert started == []


def test_kl_weight_loss_version_optimizer_and_encoder_options_change_training_and_are_recorded(
    images, reference, tmp_path
):
    plain = reference[2]["loss"]
    variants = {
        "beta": dict(kl_weight=train.KLWeight(beta=0.5)),
        "warmup": dict(kl_weight=train.KLWeight(warmup_epochs=2)),
        "free_bits": dict(kl_weight=train.KLWeight(free_bits=0.5)),
        "loss_2020": dict(loss="keras-io-2020"),
        "adam": dict(optimizer="adam", learning_rate=1e-3),
        "options": dict(
            model_options={"activation": "leaky_relu", "dense_units": 8, "standardize_input": True}
        ),
    }
    for name, options in variants.items():
        vae, history = train.train_vae(images, tmp_path / name, **{**SETTINGS, **options})
        assert history["loss"] != plain, name  # every option reaches the step
        assert all(np.isfinite(history["loss"])), name
        settings = train.read_history(tmp_path / name / train.HISTORY_FILE)["settings"]
        assert settings == train.run_settings(
            images,
            **{k: v for k, v in {**SETTINGS, **options}.items() if k not in ("epochs", "verbose")},
        ), name
        # the saved model reloads with its options (the loss version, the standardisation layer)
        loaded = model.load_vae(tmp_path / name / train.MODEL_FILE)
        assert loaded.loss_name == vae.loss_name
        np.testing.assert_array_equal(
            model.encode_mean(loaded, images), model.encode_mean(vae, images)
        )
    assert (
        train.read_history(tmp_path / "options" / train.HISTORY_FILE)["settings"]["model"][
            "dense_units"
        ]
        == 8
    )
    assert (
        model.load_vae(tmp_path / "options" / train.MODEL_FILE).encoder.get_layer("standardize")
        is not None
    )
    # the reported KL is the model's KL, whatever the weight: beta < 1 lets the encoder spend more
    # of it
    # a weighted run is never mistaken for a plain one
    with pytest.raises(runs.RunMismatch, match="kl_weight"):
        train.train_vae(images, tmp_path / "beta", **SETTINGS)


def test_keras_io_2020_loss_is_the_published_formula(images):
    """reduce_mean(BCE) * 28 * 28 and -0.5 * reduce_mean(1 + log_var - mean^2 - exp(log_var)) over
    the batch."""
    vae = model.build_vae(16, 3, seed=5, loss="keras-io-2020")
    z_mean, z_log_var, _ = (np.asarray(t, np.float64) for t in vae.encoder(images[:6]))
    reconstruction, kl = vae.loss_terms(images[:6])
    kl_2020 = -0.5 * np.mean(1 + z_log_var - z_mean**2 - np.exp(z_log_var))
    assert float(np.mean(vae.reduce_kl(kl))) == pytest.approx(kl_2020, rel=1e-5)
    # same weights, the sum form: KL summed over the 3 dimensions
    summed = model.build_vae(16, 3, seed=5)
    _, kl_sum = summed.loss_terms(images[:6])
    assert float(np.mean(summed.reduce_kl(kl_sum))) == pytest.approx(3 * kl_2020, rel=1e-5)
    # reconstruction: the mean BCE per pixel times 784, not the per-image sum over 16 x 16 pixels
    assert np.asarray(reconstruction).shape == (6,)
    with pytest.raises(ValueError, match="loss must be one of"):
        model.build_vae(16, 2, loss="mean")


def test_mixed_and_shuffled_batches_train_through_the_same_step(images, tmp_path):
    copies = np.repeat(images[:3], 4, axis=0)  # 3 sources x 4 copies, grouped by source
    _, history = train.train_vae(
        copies,
        tmp_path,
        **{**SETTINGS, "epochs": 2, "batch_size": 6},
        batches=train.mixed_batches(3, 4, 6),
    )
    settings = train.read_history(tmp_path / train.HISTORY_FILE)["settings"]
    assert settings["batches"] == "custom: mixed_batches(3, 4, 6)" and len(history["loss"]) == 2
