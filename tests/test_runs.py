"""runs.py: atomic files, the one fingerprint, the settings rule, run folder names, disk checks."""

import os

import numpy as np
import pytest

from vae_overlay import datasets, runs


class Interrupt(Exception):
    """Stands in for a killed process."""


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "sub" / "file.json"
    runs.atomic_write_text(target, "first")
    assert target.read_text() == "first"
    with pytest.raises(Interrupt), runs.atomic_path(target) as tmp:
        tmp.write_text("half writ")
        raise Interrupt
    assert target.read_text() == "first" and sorted(p.name for p in target.parent.iterdir()) == [
        "file.json"
    ]
    runs.atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    # normal permissions, not mkstemp's 0600
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_fingerprint_is_one_hash_for_arrays_blocks_and_settings():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    # a file read in pieces hashes as its array
    assert (
        runs.fingerprint(array)
        == runs.fingerprint(array.tobytes())
        == runs.fingerprint(iter([array.tobytes()[:20], array.tobytes()[20:]]))
    )
    # C order, whatever the layout
    assert runs.fingerprint(np.asfortranarray(array)) == runs.fingerprint(array)
    assert (
        runs.fingerprint(array + 1) != runs.fingerprint(array)
        and len(runs.fingerprint(array)) == 16
    )
    assert runs.fingerprint({"a": 1, "b": [2, 3]}) == runs.fingerprint({"b": [2, 3], "a": 1})


def test_check_same_settings_names_every_difference_and_keys_on_one_side():
    runs.check_same_settings({"a": 1, "b": 2}, {"b": 2, "a": 1}, "run")
    with pytest.raises(runs.RunMismatch, match=r"a=1 \(this call: 5\)") as caught:
        runs.check_same_settings(
            {"a": 1, "b": 2}, {"a": 5, "b": 2, "c": 3}, "folder x", "set retrain=True"
        )
    message = str(caught.value)
    assert (
        "folder x" in message
        and "c=None (this call: 3)" in message
        and "set retrain=True" in message
    )


def test_run_names(tmp_path):
    built_in = ["elpv-cracks", "elpv-crack-patches", "synthetic"]
    assert [datasets.run_name(name) for name in built_in] == built_in
    assert datasets.run_name("/x/défauts fissures").startswith("défauts_fissures-")
    # two folders with one name, and a folder named like a built-in set, get folders of their own
    first, second = tmp_path / "a" / "my set", tmp_path / "b" / "my set"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    names = {
        datasets.run_name(f"{first}/"),
        datasets.run_name(str(second)),
        datasets.run_name(str(tmp_path / "synthetic")),
    }
    assert len(names) == 3 and all(name.startswith(("my_set-", "synthetic-")) for name in names)
    assert datasets.run_name(str(first)) == datasets.run_name(str(first / ".." / "my set"))
    assert datasets.run_name(str(first)) == f"my_set-{runs.fingerprint(str(first))[:6]}"
    assert datasets.dataset_label(datasets.run_name(str(first))) == "my_set"
    assert runs.safe_name("a / b: c") == "a_b_c"


def test_read_json_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="history .*missing: run it again"):
        runs.read_json(tmp_path / "h.json", "history", "run it again")
    (tmp_path / "h.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        runs.read_json(tmp_path / "h.json")


def test_check_writable_refuses_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root ignores permissions: simulate with a file in the way
            folder.chmod(0o700)
            (tmp_path / "blocked").write_text("a file, not a folder")
            folder = tmp_path / "blocked" / "artifacts"
        with pytest.raises(runs.DiskError, match="Cannot write to the artifacts folder"):
            runs.check_writable(folder)
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_check_writable_refuses_a_full_disk(tmp_path):
    with pytest.raises(runs.DiskError, match="MB free"):
        runs.check_writable(tmp_path, need_bytes=10**18)
    assert runs.check_writable(tmp_path / "new dir é") == tmp_path / "new dir é"


def test_folder_names_are_a_safe_label_and_a_fingerprint_prefix(tmp_path):
    """The one naming rule keeps the names of the folders on disk: label, '-', hex digits."""
    settings = {"name": "beta 0.5", "beta": 0.5}
    assert runs.folder_name("beta 0.5-d2") == "beta_0.5-d2"
    assert runs.folder_name("overlay", settings) == f"overlay-{runs.fingerprint(settings)[:8]}"
    assert runs.folder_name("a / b", settings, 6) == f"a_b-{runs.fingerprint(settings)[:6]}"
    named = runs.named_folder(tmp_path, "x", settings, 6)
    assert named == tmp_path / runs.folder_name("x", settings, 6)
    assert not named.exists()
