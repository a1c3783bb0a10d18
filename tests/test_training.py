"""train_vae: loss bookkeeping, determinism, resuming, loading a finished model, the NaN guard."""
import json
import os
import shutil

import keras
import numpy as np
import pytest

from vae_overlay import model

from fake_images import crack_like_images

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
def images():
    return crack_like_images(24)


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    """One uninterrupted 4-epoch run that the other tests compare with."""
    run_dir = tmp_path_factory.mktemp("reference")
    vae, history = model.train_vae(images, run_dir, **SETTINGS)
    return run_dir, weights_of(vae), history


def test_history_has_every_epoch_and_loss_is_reconstruction_plus_kl(reference):
    run_dir, _, history = reference
    assert sorted(history) == ["kl_loss", "loss", "reconstruction_loss"]
    assert all(len(values) == 4 and np.isfinite(values).all() for values in history.values())
    for total, reconstruction, kl in zip(history["loss"], history["reconstruction_loss"], history["kl_loss"]):
        assert total == pytest.approx(reconstruction + kl, rel=1e-12)
    assert history["loss"][-1] < history["loss"][0]  # it learns something
    record = json.loads((run_dir / "history.json").read_text())
    assert record["epochs"] == 4 and record["finished"] and record["history"] == history
    assert sorted(p.name for p in run_dir.iterdir()) == ["history.json", "vae.keras"]


def test_same_seed_gives_identical_weights_and_another_seed_does_not(images, reference, tmp_path):
    vae, history = model.train_vae(images, tmp_path / "again", **SETTINGS)
    assert_same_weights(weights_of(vae), reference[1])
    assert history == reference[2]
    other, _ = model.train_vae(images, tmp_path / "other", **{**SETTINGS, "seed": 4, "epochs": 1})
    assert not np.array_equal(weights_of(other)[0], reference[1][0])


def test_interrupted_run_resumes_to_the_uninterrupted_result(images, reference, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupt):
        model.train_vae(images, run_dir, **SETTINGS, callbacks=[StopAfter(1)])
    assert not (run_dir / "vae.keras").exists()
    assert json.loads((run_dir / "history.json").read_text())["epochs"] == 2
    counter = CountEpochs()
    vae, history = model.train_vae(images, run_dir, **{**SETTINGS, "verbose": 1}, callbacks=[counter])
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
    vae, history = model.train_vae(images, run_dir, **SETTINGS, callbacks=[counter])
    assert counter.epochs == [] and history == reference[2]
    assert os.stat(run_dir / "vae.keras").st_mtime_ns == modified
    assert_same_weights(weights_of(vae), reference[1])
    vae, history = model.train_vae(images, run_dir, **SETTINGS, retrain=True, callbacks=[counter])
    assert counter.epochs == [0, 1, 2, 3]
    assert history == reference[2]  # deterministic, so retraining gives the same model again


def test_more_epochs_continue_the_finished_model_exactly(images, reference, tmp_path):
    run_dir = tmp_path / "continued"
    shutil.copytree(reference[0], run_dir)
    continued, history = model.train_vae(images, run_dir, **{**SETTINGS, "epochs": 6})
    assert history["loss"][:4] == reference[2]["loss"] and len(history["loss"]) == 6
    direct, direct_history = model.train_vae(images, tmp_path / "direct", **{**SETTINGS, "epochs": 6})
    assert history == direct_history
    assert_same_weights(weights_of(continued), weights_of(direct))


def test_other_settings_or_data_are_refused(images, reference, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(reference[0], run_dir)
    with pytest.raises(model.RunMismatch, match=r"batch_size=8 \(this call: 5\).*retrain=True"):
        model.train_vae(images, run_dir, **{**SETTINGS, "batch_size": 5})
    with pytest.raises(model.RunMismatch, match="images_sha256"):
        model.train_vae(images[:-1], run_dir, **SETTINGS)
    with pytest.raises(model.RunMismatch, match="more than the 2 asked"):
        model.train_vae(images, run_dir, **{**SETTINGS, "epochs": 2})


class PoisonWeights(keras.callbacks.Callback):
    """Writes NaN into the first encoder kernel after epoch index `epoch` (after its checkpoint)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            kernel = self.model.encoder.get_layer("conv_1").kernel
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))


def test_nan_loss_stops_training_and_keeps_the_last_good_state(images, reference, tmp_path):
    run_dir = tmp_path / "nan"
    with pytest.raises(model.TrainingDiverged, match=r"nan at epoch 3, batch 1.*after epoch 2") as caught:
        model.train_vae(images, run_dir, **SETTINGS, callbacks=[PoisonWeights(1)])
    assert (caught.value.epoch, caught.value.batch) == (3, 1)
    assert not (run_dir / "vae.keras").exists()
    with np.load(run_dir / "checkpoint.npz") as stored:
        assert json.loads(str(stored["meta"]))["epoch"] == 2
        assert all(np.isfinite(stored[name]).all() for name in stored.files if name != "meta")
    # The state on disk is the good one: resuming from it ends exactly where the clean run ended.
    vae, history = model.train_vae(images, run_dir, **SETTINGS)
    assert history == reference[2]
    assert_same_weights(weights_of(vae), reference[1])


def test_bad_images_are_refused_before_training(images, tmp_path):
    broken = images.copy()
    broken[3, 5, 5, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN/infinite pixels in 1 images"):
        model.train_vae(broken, tmp_path, **SETTINGS)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.train_vae(images * 255, tmp_path, **SETTINGS)
    with pytest.raises(ValueError, match=r"\(n, size, size, 1\)"):
        model.train_vae(images[..., 0], tmp_path, **SETTINGS)


def test_custom_batches_are_used_with_uneven_sizes(images, tmp_path):
    calls = []

    def every_batch_holds_image_zero(epoch, rng):
        calls.append(epoch)
        order = rng.permutation(np.arange(1, len(images)))
        return [np.r_[0, order[:10]], np.r_[0, order[10:20]], np.r_[0, order[20:]]]  # 11, 11, 4 images

    _, history = model.train_vae(images, tmp_path, **{**SETTINGS, "epochs": 2},
                                 batches=every_batch_holds_image_zero)
    assert calls == [0, 1]
    assert all(t == pytest.approx(r + k, rel=1e-12) for t, r, k in
               zip(history["loss"], history["reconstruction_loss"], history["kl_loss"]))
    settings = json.loads((tmp_path / "history.json").read_text())["settings"]
    assert settings["batches"].startswith("custom: ")
    assert "every_batch_holds_image_zero" in settings["batches"]
    with pytest.raises(ValueError, match="outside"):
        model.train_vae(images, tmp_path / "bad", **SETTINGS, batches=lambda epoch, rng: [np.array([0, 99])])


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
        model._save_model(target, vae)
    assert target.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["vae.keras"]


def test_unwritable_run_dir_fails_before_any_training(images, tmp_path):
    from vae_overlay.data import DatasetError

    (tmp_path / "blocked").write_text("a file where the run folder should be")
    started = []
    callback = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: started.append(epoch))
    with pytest.raises(DatasetError, match="Cannot write to the artifacts folder"):
        model.train_vae(images, tmp_path / "blocked" / "run", **SETTINGS, callbacks=[callback])
    assert started == []
