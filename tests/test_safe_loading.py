"""Models a user might receive are loaded with safe_mode=True: lambdas and tampered configs are
refused."""

import json
import zipfile

import keras
import numpy as np
import pytest

from vae_overlay import model


def rewrite_config(source, target, change):
    """Copy a .keras zip, passing its config.json through `change`."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            payload = zin.read(item.filename)
            if item.filename == "config.json":
                payload = json.dumps(change(json.loads(payload))).encode()
            zout.writestr(item, payload)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("safe") / "vae.keras"
    vae = model.build_vae(16, 2, seed=1)
    vae(np.zeros((1, 16, 16, 1), np.float32))
    vae.save(path)
    return path


def test_a_clean_model_loads_in_safe_mode(saved):
    assert isinstance(model.load_vae(saved), model.VAE)


def test_a_lambda_layer_is_refused(tmp_path):
    inputs = keras.Input((16, 16, 1))
    # arbitrary code, serialised as bytecode
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ValueError, match="lambda.keras could not be loaded") as error:
        model.load_vae(path)
    assert "safe_mode" in str(error.value.__cause__) or "Lambda" in str(error.value.__cause__)


def test_an_injected_lambda_in_a_vae_config_is_refused(saved, tmp_path):
    """The sampling layer swapped for a Lambda carrying bytecode, as an attacker would."""
    found = []

    def swap_sampling(node):
        if isinstance(node, dict):
            if node.get("class_name") == "Sampling":
                found.append(node["config"]["name"])
                lam = keras.layers.Lambda(lambda x: x[0], name=node["config"]["name"])
                # keeps name and inbound nodes
                return node | keras.saving.serialize_keras_object(lam)
            return {k: swap_sampling(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap_sampling(v) for v in node]
        return node

    target = tmp_path / "tampered.keras"
    rewrite_config(saved, target, swap_sampling)
    assert found, "the config holds the sampling layer we replace"
    with pytest.raises(ValueError, match="tampered.keras could not be loaded") as error:
        model.load_vae(target)
    assert (
        "safe_mode" in str(error.value.__cause__) or "lambda" in str(error.value.__cause__).lower()
    )


def test_an_unknown_class_in_the_config_is_refused(saved, tmp_path):
    def swap(config):
        config.update(class_name="system", module="os", registered_name="system")
        return config

    target = tmp_path / "foreign.keras"
    rewrite_config(saved, target, swap)
    with pytest.raises(ValueError, match="foreign.keras could not be loaded"):
        model.load_vae(target)


def test_a_foreign_but_safe_model_is_not_taken_for_a_vae(tmp_path):
    path = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(path)
    with pytest.raises(ValueError, match="not a vae_overlay VAE"):
        model.load_vae(path)


def test_a_truncated_file_is_refused_with_its_name(saved, tmp_path):
    target = tmp_path / "cut.keras"
    target.write_bytes(saved.read_bytes()[:500])
    with pytest.raises(ValueError, match="cut.keras could not be loaded"):
        model.load_vae(target)


def test_no_pickle_in_saved_artifacts(saved):
    """Model files are zip archives of JSON and HDF5 — nothing in them is unpickled on load."""
    with zipfile.ZipFile(saved) as archive:
        names = archive.namelist()
    assert set(names) <= {"config.json", "metadata.json", "model.weights.h5"}, names
