"""SIGKILL a real training at random points — some in the middle of a checkpoint write — and resume
it.

Each trial trains in a subprocess, is killed, restarted until it finishes, and then must give: every
epoch exactly once in the history, a model file that loads, and the same final weights as an
uninterrupted run with the same seed.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

EPOCHS = 6
CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from vae_overlay import checkpoint, runs, train

    run_dir, slow_writes = sys.argv[1], sys.argv[2] == "slow"
    real_write = runs.atomic_write_bytes

    def announced_write(path, payload):
        # Announce the write, then pause between writing the temporary file and renaming it, so that
        # the parent can kill us exactly while a checkpoint is half-way to disk.
        if slow_writes:
            import tempfile
            from pathlib import Path
            path = Path(path)
            handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(handle, "wb") as out:
                out.write(payload[: len(payload) // 2])
                print("WRITING", path.name, flush=True)
                time.sleep(0.3)
                out.write(payload[len(payload) // 2:])
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        else:
            real_write(path, payload)

    # the names the first checkpoint (train.py) and every later checkpoint and history
    # (checkpoint.py) are written with
    train.atomic_write_bytes = checkpoint.atomic_write_bytes = announced_write
    rng = np.random.default_rng(0)
    images = rng.random((24, 16, 16, 1)).astype("float32")
    train.train_vae(images, run_dir, latent_dim=2, epochs=EPOCHS, batch_size=8, seed=7, verbose=2)
    print("DONE", flush=True)
""").replace("EPOCHS", str(EPOCHS))


def start(run_dir, mode):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run_dir), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def finish(run_dir, mode="fast"):
    process = start(run_dir, mode)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0 and "DONE" in output, output[-3000:]
    return output


def kill_when(process, marker, nth, timeout=300):
    """Read the child's output until the `nth` line starting with `marker`, then SIGKILL it."""
    seen, deadline = 0, time.monotonic() + timeout
    for line in process.stdout:
        if line.startswith(marker):
            seen += 1
            if seen == nth:
                process.send_signal(signal.SIGKILL)
                break
        assert time.monotonic() < deadline, "child never reached the kill point"
    process.wait(timeout=60)
    return process.returncode


def final_state(run_dir):
    from vae_overlay import model

    vae = model.load_vae(Path(run_dir) / "vae.keras")
    record = json.loads((Path(run_dir) / "history.json").read_text())
    return [w.copy() for w in vae.get_weights()], record


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    finish(run_dir)
    return final_state(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(4))
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, reference, trial):
    random.seed(1000 + trial)
    kills = []
    if trial < 2:  # killed in the middle of a checkpoint write (the temp file is half written)
        # writes: the initial checkpoint, then a checkpoint + a history per epoch
        for most in (EPOCHS, 2):
            process = start(tmp_path, "slow")
            nth = random.randint(1, most)
            kills.append(("during write", nth, kill_when(process, "WRITING", nth)))
    else:  # killed after a random epoch report, at a random delay (mid-epoch or mid-write)
        process = start(tmp_path, "fast")
        nth = random.randint(1, EPOCHS - 1)
        for line in process.stdout:
            if line.startswith("epoch") and (nth := nth - 1) == 0:
                time.sleep(random.uniform(0, 0.2))
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=60)
        kills.append(("after epoch report", nth, process.returncode))
    assert all(code == -signal.SIGKILL for *_, code in kills), kills
    # resumes from the last whole checkpoint (or starts afresh if none was completed)
    finish(tmp_path)

    weights, record = final_state(tmp_path)
    ref_weights, ref_record = reference
    assert record["epochs"] == EPOCHS and record["finished"]
    assert all(
        len(record["history"][key]) == EPOCHS for key in ("loss", "reconstruction_loss", "kl_loss")
    )
    assert record["history"] == ref_record["history"], "every epoch once, with the same losses"
    differences = [float(np.abs(a - b).max()) for a, b in zip(weights, ref_weights)]
    assert max(differences) == 0.0, (
        f"final weights differ from the uninterrupted run by {max(differences)}"
    )


@pytest.mark.slow
def test_stale_temp_files_never_replace_the_model(tmp_path):
    """A kill during a write leaves at most a hidden temp file; the real files stay whole and
    loadable."""
    process = start(tmp_path, "slow")
    kill_when(process, "WRITING", 3)
    temps = list(Path(tmp_path).glob(".*.tmp"))
    assert temps, "the kill landed mid-write, so a temporary file is left"
    with np.load(tmp_path / "checkpoint.npz") as checkpoint:
        assert "meta" in checkpoint.files
    finish(tmp_path)
    final_state(tmp_path)
