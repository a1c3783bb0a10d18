"""study.py: grids, run keys, one row per run, resuming after SIGKILL of the client or of a worker,
on a real Dask LocalCluster."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vae_overlay import section3_study, study
from vae_overlay.stats import t_interval

TINY = {
    "seed": [0, 1],
    "image_size": [16],
    "loss": ["sum", "keras-io-2020"],
    "data": ["synthetic"],
    "epochs": [2],
}


def test_configurations_expand_the_grid_seeds_outermost_with_paper_settings():
    configs = study.configurations(TINY)
    assert [(c["seed"], c["loss"]) for c in configs] == [
        (0, "sum"),
        (0, "keras-io-2020"),
        (1, "sum"),
        (1, "keras-io-2020"),
    ]
    assert all(
        c["latent_dim"] == 2 and c["batch_size"] == 10 and c["learning_rate"] == 2e-3
        for c in configs
    )
    section3 = study.configurations(study.GRIDS["section3"][1])
    assert len(section3) == 10 * 2 * 2 * 3 and all(c["epochs"] == 100 for c in section3)
    # a partial study covers every setting with its first seeds
    assert {c["seed"] for c in section3[:12]} == {0}


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"optimizer": ["adam"]}, "unknown grid key"),
        ({"loss": ["mean"]}, r"unknown loss \['mean'\]; allowed"),
        ({"data": ["mnist"]}, r"unknown data \['mnist'\]; allowed"),
        ({"seed": []}, "at least one value"),
    ],
)
def test_bad_grids_are_refused_before_anything_runs(grid, message):
    with pytest.raises(study.StudyError, match=message):
        study.configurations(grid)


def test_run_keys_change_with_any_setting_and_the_data():
    config = study.configurations(TINY)[0]
    assert study.run_key(config) == study.run_key(dict(config))
    assert (
        len(
            {
                study.run_key({**config, key: value})
                for key, value in [
                    ("seed", 5),
                    ("loss", "keras-io-2020"),
                    ("epochs", 3),
                    ("image_size", 20),
                ]
            }
            | {study.run_key(config)}
        )
        == 5
    )


def test_a_failing_run_is_recorded_not_raised(tmp_path):
    row = study.run_one({**study.configurations(TINY)[0], "image_size": 10}, str(tmp_path))
    assert "multiple of 4" in row["error"] and row["wall_seconds"] >= 0


def test_a_table_of_another_version_is_refused(tmp_path):
    path, version = tmp_path / "t.csv", section3_study.KIND.version
    study.write_table(path, [{"key": "00000000000000e1", "version": version + 1}])
    with pytest.raises(study.StudyError, match="version"):
        study.read_table(path)
    row = {"key": "00000000000000e1", "version": version, "collapsed": True}
    study.write_table(path, [row])
    assert study.read_table(path) == [row]


@pytest.mark.slow
def test_tiny_study_on_a_local_cluster_then_nothing_is_recomputed(tmp_path, capsys):
    # the 10 px runs fail (not a multiple of 4) without stopping the others
    grid = {**TINY, "image_size": [10, 16]}
    rows = study.run_study(
        "t", tmp_path / "results", tmp_path / "art", grid=grid, n_workers=2, progress=False
    )
    assert len(rows) == 8 and len({row["key"] for row in rows}) == 8
    good = [row for row in rows if not row["error"]]
    assert len(good) == 4 and all(row["image_size"] == 16 for row in good)
    for row in good:
        assert row["epochs"] == 2 and row["dead_units"] <= row["dense_units"] == 16
        assert (
            row["collapsed"] == (row["active_units"] == 0)
            and row["z1_min"] <= row["z1_p01"] <= row["z1_max"]
        )
        assert 0.0 <= row["crack_fraction_box"] <= 1.0 and row["train_seconds"] > 0
    assert study.read_table(tmp_path / "results" / "studies" / "t.csv") == rows
    assert (tmp_path / "results" / "studies" / "t.grid.json").is_file()
    capsys.readouterr()
    again = study.run_study(
        "t", tmp_path / "results", tmp_path / "art", grid=TINY, n_workers=2, progress=False
    )
    # the finished runs are found by key, none is recomputed
    assert "0 to run" in capsys.readouterr().out
    assert [row for row in again if row["image_size"] == 16] == good


CHILD = """
import sys
from vae_overlay import study
grid = {"seed": [0, 1, 2], "image_size": [16], "loss": ["sum"], "data": ["synthetic"],
        "epochs": [EPOCHS]}
study.run_study("k", sys.argv[1], sys.argv[2], grid=grid, n_workers=1, progress=False)
print("DONE", flush=True)
"""


def start_study(tmp_path, epochs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD.replace("EPOCHS", str(epochs)),
            str(tmp_path / "results"),
            str(tmp_path / "art"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def table_rows(tmp_path):
    path = tmp_path / "results" / "studies" / "k.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def wait_for(condition, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def descendants(pid):
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True
    ).stdout.split()
    return [int(c) for c in children] + [d for c in children for d in descendants(int(c))]


@pytest.mark.slow
def test_sigkill_of_the_client_then_resume_loses_nothing_and_duplicates_nothing(tmp_path):
    process = start_study(tmp_path, epochs=2)
    wait_for(lambda: len(table_rows(tmp_path)) >= 1)
    os.killpg(process.pid, signal.SIGKILL)  # the client, its scheduler and its workers
    process.wait(timeout=60)
    before = {row["key"]: row for row in table_rows(tmp_path)}
    assert 1 <= len(before) < 3
    finished = start_study(tmp_path, epochs=2)
    output, _ = finished.communicate(timeout=600)
    assert "DONE" in output, output[-2000:]
    after = table_rows(tmp_path)
    assert (
        len(after) == 3
        and len({row["key"] for row in after}) == 3
        and not any(row["error"] for row in after)
    )
    # kept as they were
    assert all(before[row["key"]] == row for row in after if row["key"] in before)


@pytest.mark.slow
def test_sigkill_of_a_worker_mid_training_is_replaced_and_the_run_resumes(tmp_path):
    process = start_study(tmp_path, epochs=60)
    art = tmp_path / "art"
    wait_for(lambda: any(art.glob("*/history.json")))  # a run has finished at least one epoch
    workers = [
        pid
        for pid in descendants(process.pid)  # the worker process the nanny spawned
        if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    ]
    assert len(workers) == 1, workers
    os.kill(workers[0], signal.SIGKILL)
    output, _ = process.communicate(timeout=600)
    assert "DONE" in output, output[-2000:]
    rows = table_rows(tmp_path)
    assert len(rows) == 3 and not any(row["error"] for row in rows), rows


def test_summarize_counts_rates_and_wilson_intervals():
    def row(seed, active, reach, box=False, loss="sum"):
        return {
            "data": "synthetic",
            "image_size": 64,
            "loss": loss,
            "seed": seed,
            "active_units": active,
            "collapsed": active == 0,
            "box_reached": box,
            "z1_min": -reach,
            "z1_max": 0.5,
            "z2_min": 0.0,
            "z2_max": 0.1,
            "z1_p01": -reach / 2,
            "z1_p99": 0.4,
            "z2_p01": 0.0,
            "z2_p99": 0.1,
            "crack_fraction_box": 0.2,
            "crack_fraction_occupied": 0.0,
            "error": "",
        }

    rows = [
        row(0, 0, 0.0),
        row(1, 1, 2.0),
        row(2, 2, 16.0, box=True),
        row(3, 2, 4.0),
        {"data": "synthetic", "image_size": 64, "loss": "sum", "error": "ValueError: x"},
        row(0, 2, 1.0, loss="keras-io-2020"),
    ]
    summary = section3_study.summarize(rows)
    # the failed run left out
    assert [(s["loss"], s["runs"]) for s in summary] == [("keras-io-2020", 1), ("sum", 4)]
    s = summary[1]
    assert (s["collapsed"], s["one_axis"], s["two_axes"], s["box_reached"]) == (1, 1, 2, 1)
    assert s["collapsed_rate"] == 0.25 and s["collapsed_low"] < 0.25 < s["collapsed_high"] < 1
    assert s["reach_median"] == 3.0 and s["reach_max"] == 16.0
    # 16 at the edge; its p01 is 8
    assert (s["extent_any"], s["extent_both"], s["extent_any_1_99"]) == (1, 0, 0)
    # 0 of 1: an interval, not 0
    assert summary[0]["collapsed_low"] == 0.0 and summary[0]["collapsed_high"] < 1


def test_t_interval_is_scipys_t_interval_a_point_without_spread_and_nan_below_two_values():
    from scipy import stats

    values = [0.1, 0.4, -0.2, 0.3, float("nan")]  # the NaN is left out, as a dropped run
    expected = stats.ttest_1samp(values[:4], 0.0).confidence_interval(0.9)
    assert t_interval(values, 0.9) == pytest.approx((expected.low, expected.high))
    assert t_interval([0.2, 0.2, 0.2]) == (pytest.approx(0.2), pytest.approx(0.2))
    assert all(v != v for v in t_interval([0.3])) and all(v != v for v in t_interval([]))


def test_the_command_line_takes_several_studies_and_refuses_unknown_ones(capsys):
    with pytest.raises(SystemExit):
        study.main(["tiny", "section5"])
    assert "unknown study section5: known are [" in capsys.readouterr().err


def test_the_grids_file_holds_every_named_study_and_a_file_of_ones_own_adds_grids(tmp_path, capsys):
    assert {
        "section3",
        "section3-fov",
        "section4",
        "section4-sets",
        "section4-dims",
        "classifier",
    } <= set(study.GRIDS)
    for name, (kind, grid) in study.GRIDS.items():
        # every grid expands and passes its kind's checks
        assert study.configurations(grid, kind), name
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "mine:\n  kind: section3\n  grid: {seed: [0], image_size: [16], data: [nowhere]}\n"
    )
    with pytest.raises(study.StudyError, match="nowhere"):  # checked before anything runs
        study.main(["mine", "--grids", str(mine), "--results", str(tmp_path)])


@pytest.mark.parametrize(
    "entry, message",
    [
        ("kind: section5\n  grid: {seed: [0]}", r"study 'mine' .*unknown kind of study 'section5'"),
        (
            "kind: section3\n  grid: {seeds: [0]}",
            r"study 'mine' .*unknown grid key\(s\) \['seeds'\]",
        ),
        (
            "kind: section3\n  grids: {seed: [0]}",
            r"'mine' needs exactly the keys 'kind' and 'grid'",
        ),
    ],
)
def test_a_grids_file_with_an_unknown_kind_or_key_names_it(tmp_path, entry, message):
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"mine:\n  {entry}\n")
    with pytest.raises(study.StudyError, match=message):
        study.main(["mine", "--grids", str(mine), "--results", str(tmp_path)])
    assert not (tmp_path / "studies").exists()  # refused before anything ran


def test_the_runner_finds_the_built_in_kinds_without_their_modules_imported_first():
    code = (
        "import sys; from vae_overlay import study; "
        "before = 'vae_overlay.section3_study' in sys.modules; "
        "kind = study.kind_of('section3'); "
        "module = sys.modules['vae_overlay.section3_study']; "
        "print(before, kind is module.KIND, sorted(study.KINDS))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "False True ['section3']"


def test_a_local_cluster_has_no_heartbeat_limit_so_a_paused_study_keeps_its_runs():
    client, cluster = study.connect(n_workers=1)
    try:
        assert cluster.scheduler.worker_ttl is None
    finally:
        client.close()
        cluster.close()


def test_a_diverged_run_is_recorded_as_failed_with_its_reason_never_as_collapsed(
    tmp_path, monkeypatch
):
    """A training whose state becomes NaN (here every gradient, the loss staying finite) fails the
    run."""
    import tensorflow as tf

    from vae_overlay import model

    original = model.VAE.loss_terms

    def nan_gradients(self, data, training=False):
        reconstruction, kl = original(self, data, training=training)

        @tf.custom_gradient
        def poisoned(x):
            return tf.identity(x), lambda dy: dy * float("nan")

        return poisoned(reconstruction), kl

    monkeypatch.setattr(model.VAE, "loss_terms", nan_gradients)
    config = study.configurations(TINY, "section3")[0]
    row = study.run_one(config, str(tmp_path), kind="section3")
    assert row["error"].startswith(
        "TrainingDiverged: Training diverged: the gradients became non-finite"
    )
    assert "at epoch 1, batch 1" in row["error"] and "collapsed" not in row


def test_a_run_another_table_finished_is_copied_not_recomputed(tmp_path, capsys):
    studies = tmp_path / "results" / "studies"
    studies.mkdir(parents=True)
    configs = study.configurations(TINY, "section3")
    version = section3_study.KIND.version
    done = [
        {
            "key": study.run_key(config, "section3"),
            **config,
            "version": version,
            "error": "",
            "collapsed": False,
        }
        for config in configs
    ]
    done[1]["error"] = "TrainingDiverged: ..."  # a failed run is not copied: it runs again
    study.write_table(studies / "earlier.csv", done)
    grid = {**TINY, "seed": [0]}  # two of its runs are finished in earlier.csv
    keys = [study.run_key(config, "section3") for config in study.configurations(grid, "section3")]
    copied = study.finished_elsewhere(studies / "new.csv", set(keys), "section3")
    assert sorted(copied) == sorted(
        row["key"] for row in done if not row["error"] and row["key"] in keys
    )
    rows = study.run_study(
        "new",
        tmp_path / "results",
        tmp_path / "art",
        grid={**grid, "loss": ["sum"]},
        progress=False,
    )
    printed = capsys.readouterr().out
    # nothing trained
    assert "1 finished runs with the same keys taken" in printed and "0 to run" in printed
    assert [row["key"] for row in rows] == keys[:1] and rows[0]["collapsed"] is False
    assert study.read_table(studies / "new.csv") == rows


def test_reach_is_counted_at_the_papers_own_extent_beside_the_lenient_rule():
    row = {
        "box_reached": True,
        "z1_min": -16.0,
        "z1_max": 2.0,
        "z1_p01": -9.0,
        "z1_p99": 1.5,
        "z2_min": -3.0,
        "z2_max": 4.0,
        "z2_p01": -2.0,
        "z2_p99": 3.0,
    }
    # one outlier image at z1 = -16
    assert section3_study.extents(row) == {
        "box_reached": True,
        "extent_any": True,
        "extent_both": False,
        "extent_any_1_99": False,
    }
    row.update(z2_max=10.5, z1_p01=-15.0)
    assert section3_study.extents(row) == {
        "box_reached": True,
        "extent_any": True,
        "extent_both": True,
        "extent_any_1_99": True,
    }
    committed = [
        r
        for r in study.read_table(
            Path(__file__).resolve().parents[1] / "results/studies/section3.csv"
        )
        if not r.get("error")
    ]
    counts = {
        name: sum(section3_study.extents(r)[name] for r in committed)
        for name in ("box_reached", "extent_both")
    }
    assert counts["extent_both"] <= counts["box_reached"] and len(committed) == 120


def test_the_command_line_as_make_study_runs_it_knows_the_kinds_and_runs_a_study(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "mine:\n  kind: section3\n"
        "  grid: {seed: [0], image_size: [16], data: [synthetic], epochs: [1]}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "vae_overlay.study", "mine", "--grids", str(mine)]
        + ["--results", str(tmp_path / "results"), "--artifacts", str(tmp_path / "art")]
        + ["--workers", "1"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 runs in" in done.stdout and ", 0 failed" in done.stdout, done.stdout
    with open(tmp_path / "results" / "studies" / "mine.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert row["data"] == "synthetic" and not row["error"]
