"""Run by tests/test_scale.py in a fresh process: tf.distribute needs its devices set before
TensorFlow starts.

    python distributed_child.py mirrored OUT.json  # one process, the CPU as two logical devices
    python distributed_child.py worker I PORT0 PORT1 RUN_DIR OUT.json  # worker I of 2
    python distributed_child.py single RUN_DIR OUT.json  # the workers' training on one device

Writes the measured numbers as JSON to OUT.json; the assertions are in the test.
"""

import contextlib
import json
import os
import sys
import tempfile

MODE = sys.argv[1]
if MODE == "worker":
    index, port0, port1 = int(sys.argv[2]), sys.argv[3], sys.argv[4]
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"localhost:{port0}", f"localhost:{port1}"]},
            "task": {"type": "worker", "index": index},
        }
    )

import tensorflow as tf  # noqa: E402

if MODE == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    STRATEGY = None
elif MODE == "worker":
    STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()  # must exist before any other TF op
else:
    STRATEGY = None

import keras  # noqa: E402
import numpy as np  # noqa: E402

from vae_overlay import model, synth, train  # noqa: E402

EPOCHS = 3


def images(count=80, size=32):
    array, _, _ = synth.make_dataset(count, size=size, seed=0, kinds=("crack",), crack_fraction=1.0)
    return array.astype(np.float32)


def one_update(strategy, batch):
    """Weight change of one SGD step on `batch` with the sampling noise switched off (z_log_var =
    -60)."""
    with strategy.scope() if strategy else contextlib.nullcontext():
        vae = model.build_vae(32, 2, seed=3)
        log_var = vae.encoder.get_layer("z_log_var")
        log_var.set_weights(
            [np.zeros_like(log_var.get_weights()[0]), np.full(2, -60.0, np.float32)]
        )
        vae.compile(optimizer=keras.optimizers.SGD(1e-4))
        vae.optimizer.build(vae.trainable_variables)
        before = vae.get_weights()
        index = [np.arange(len(batch), dtype=np.int32)]
        if strategy:
            losses = train.run_epoch(
                train.make_train_step(vae, strategy=strategy), batch, index, strategy
            )
        else:
            losses = train.run_epoch(train.make_train_step(vae), batch, index)
    return losses[0], [after - start for after, start in zip(vae.get_weights(), before)]


def mirrored(out):
    data = images()
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    two = tf.distribute.MirroredStrategy(devices)
    result = {"replicas": two.num_replicas_in_sync}
    # 1. One update of an odd minibatch (shares of 4 and 3 images), no noise: the same step as on
    # one device.
    loss_one, delta_one = one_update(None, data[:7])
    loss_two, delta_two = one_update(two, data[:7])
    result["step_loss"] = [loss_one.tolist(), loss_two.tolist()]
    result["step_max_weight_change"] = max(float(np.abs(d).max()) for d in delta_one)
    result["step_max_difference"] = max(
        float(np.abs(a - b).max()) for a, b in zip(delta_one, delta_two)
    )
    # 2. Whole training runs, same seed: one device, a one-replica strategy, two replicas.
    with tempfile.TemporaryDirectory() as root:
        runs = {
            "one_device": None,
            "mirrored_1": tf.distribute.MirroredStrategy(devices[:1]),
            "mirrored_2": two,
        }
        weights = {}
        for name, strategy in runs.items():
            vae, history = train.train_vae(
                data, f"{root}/{name}", epochs=EPOCHS, verbose=0, strategy=strategy
            )
            result[name] = history["loss"]
            weights[name] = vae.get_weights()
            # saved from mirrored variables, loads plainly
            loaded = model.load_vae(f"{root}/{name}/vae.keras")
            result[f"{name}_reloads"] = all(
                np.array_equal(a, b) for a, b in zip(loaded.get_weights(), weights[name])
            )
        result["mirrored_1_identical"] = all(
            np.array_equal(a, b) for a, b in zip(weights["one_device"], weights["mirrored_1"])
        )
    json.dump(result, open(out, "w"))


def worker(run_dir, out):
    vae, history = train.train_vae(images(40), run_dir, epochs=EPOCHS, verbose=0, strategy=STRATEGY)
    json.dump({"loss": history["loss"], "replicas": STRATEGY.num_replicas_in_sync}, open(out, "w"))


if __name__ == "__main__":
    if MODE == "mirrored":
        mirrored(sys.argv[2])
    elif MODE == "single":
        _, history = train.train_vae(images(40), sys.argv[2], epochs=EPOCHS, verbose=0)
        json.dump({"loss": history["loss"]}, open(sys.argv[3], "w"))
    else:
        worker(sys.argv[5], sys.argv[6])
