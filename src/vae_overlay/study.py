"""Studies: a named grid of trainings, each run once on Dask, measured, and kept as one row of a table.

At the paper's settings one training is one draw from a wide distribution (the same data and settings collapse
in one seed and spread along two latent axes in another), so every Section 3 verdict is measured over a grid:
seeds x image sizes x loss versions x data. `run_study(name)`:

* expands the grid (`GRIDS[name]`; unknown keys, losses or data sources are refused before anything runs);
* keys every run by the fingerprint of its full configuration and of its training images, so a finished run is
  never recomputed, whichever grid asks for it;
* runs the missing ones on Dask: a `LocalCluster` of worker processes sized to the machine by default, or any
  running scheduler (`scheduler=` or `DASK_SCHEDULER_ADDRESS`) to scale out over many machines;
* appends each finished run to `results/studies/<name>.csv` (rewritten atomically after every run) and writes the
  grid to `<name>.grid.json`. A client killed at any moment loses at most the runs in flight; a worker killed
  mid-training is replaced and its run resumes from its last epoch checkpoint (`train.train_vae`); a failing run
  is recorded with its error (and retried by the next call) without stopping the others.

Each row holds the settings and what `measure` found: the spread of the latent means, the final losses, dead
units, active latent units, total collapse, whether the paper's box is reached, and how much of the decoded latent
plane looks like the training cracks.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import os
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from vae_overlay import runs
from vae_overlay.data import BUILT_IN

STUDY_VERSION = 1  # bump when a measurement changes: tables of another version are refused, not mixed
DATA_SOURCES = BUILT_IN
LOSSES = ("sum", "keras-io-2020")
PAPER = {"latent_dim": 2, "epochs": 100, "batch_size": 10, "learning_rate": 2e-3}
GRID_KEYS = ("data", "image_size", "loss", "seed", *PAPER)
TRAIN_KEYS = ("latent_dim", "epochs", "batch_size", "learning_rate", "seed", "loss")  # what train_vae is given
PAPER_BOX = ((-15.0, 15.0), (-10.0, 10.0))  # the paper's sampling region, z1 x z2 (Figure 3)
BOX_REACHED = (10.0, 7.0)  # a run "reaches the paper's box" if some |mean z1| >= 10 or |mean z2| >= 7 (2/3 of it)
ACTIVE_VARIANCE = 0.01  # a latent unit is active if the variance over images of E[z|x] exceeds this
GRID_POINTS = 21  # decodes per axis of the crack-region grids (21 x 21 over the box and over the occupied region)
CRACK_QUANTILE = 0.1  # a decode "scores like a training crack" at or above this quantile of the training scores
SECONDS_PER_IMAGE_EPOCH = 0.0048  # measured: 100 epochs x 80 images at 64 px in 38 s on 2 idle cores

GRIDS = {
    "section3": {"seed": list(range(10)), "image_size": [64, 128], "loss": list(LOSSES), "data": list(DATA_SOURCES)},
    "tiny": {"seed": [0, 1], "image_size": [16], "loss": list(LOSSES), "data": ["synthetic"], "epochs": [2]},
}


class StudyError(ValueError):
    """A grid or a study table that cannot be used, with what to do about it."""


def configurations(grid: dict) -> list[dict]:
    """Every configuration of `grid` (paper settings for keys it does not vary), seeds outermost, so that a
    partly finished study covers every other setting with its first seeds."""
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise StudyError(f"unknown grid key(s) {unknown}; allowed: {list(GRID_KEYS)}")
    for key, allowed in (("loss", LOSSES), ("data", DATA_SOURCES)):
        bad = [value for value in grid.get(key, []) if value not in allowed]
        if bad:
            raise StudyError(f"unknown {key} {bad}; allowed: {list(allowed)}")
    axes = {key: list(grid.get(key, [PAPER.get(key)])) for key in GRID_KEYS}
    if any(not values or None in values for values in axes.values()):
        raise StudyError(f"every grid key needs at least one value: {axes}")
    others = [key for key in GRID_KEYS if key != "seed"]
    return [{"seed": seed, **dict(zip(others, values))}
            for seed in axes["seed"] for values in itertools.product(*(axes[key] for key in others))]


@lru_cache(maxsize=8)
def training_images(data: str, image_size: int) -> np.ndarray:
    """The 80 training images of a data source at `image_size` px (cached per process)."""
    from vae_overlay import data as data_module

    return data_module.load_source(data, image_size).images


def run_key(config: dict) -> str:
    """The fingerprint of a configuration, its training images and the study version."""
    images = runs.fingerprint(training_images(config["data"], config["image_size"]))
    return runs.fingerprint({**config, "images": images, "version": STUDY_VERSION})


def estimated_seconds(configs: list[dict], n_images: int = 80) -> float:
    """Training seconds on one 2-core machine for `configs` (cost grows with the pixel count)."""
    return sum(SECONDS_PER_IMAGE_EPOCH * n_images * c["epochs"] * (c["image_size"] / 64) ** 2 for c in configs)


# ----------------------------------------------------------------------------- one run

def crack_scores(images) -> np.ndarray:
    """The project's ridge (crack) score of each image (n, s, s, 1), scaled to the image size."""
    from vae_overlay.data import crack_score

    size = images.shape[1]
    return np.array([crack_score(image[..., 0], sigma=1.0, border=max(1, size // 15)) for image in images])


def measure(vae, images) -> dict:
    """Everything a study row records about one trained VAE and its training images."""
    from vae_overlay import latent, model
    from vae_overlay.overlay import dead_units

    means = model.encode_mean(vae, images).astype(np.float64)
    row = {}
    for d in range(means.shape[1]):
        values = means[:, d]
        row.update({f"z{d + 1}_min": values.min(), f"z{d + 1}_max": values.max(), f"z{d + 1}_std": values.std(),
                    f"z{d + 1}_p01": np.percentile(values, 1), f"z{d + 1}_p99": np.percentile(values, 99)})
    row["dead_units"], row["dense_units"] = dead_units(vae.encoder, images)
    row["active_units"] = int((means.var(axis=0) > ACTIVE_VARIANCE).sum())
    row["collapsed"] = row["active_units"] == 0
    reach = np.abs(means).max(axis=0)
    row["box_reached"] = bool(len(reach) >= 2 and (reach[0] >= BOX_REACHED[0] or reach[1] >= BOX_REACHED[1]))
    row["crack_threshold"] = float(np.quantile(crack_scores(images), CRACK_QUANTILE))
    if means.shape[1] == 2:
        low, high = np.percentile(means, 1, axis=0), np.percentile(means, 99, axis=0)
        regions = {"box": PAPER_BOX, "occupied": tuple(zip(low, np.maximum(high, low + 1e-3)))}
        for name, ((z1_low, z1_high), (z2_low, z2_high)) in regions.items():
            z1, z2 = np.meshgrid(np.linspace(z1_low, z1_high, GRID_POINTS), np.linspace(z2_low, z2_high, GRID_POINTS))
            decoded = latent.decode_batched(vae.decoder, np.stack([z1.ravel(), z2.ravel()], axis=1)) / 255.0
            row[f"crack_fraction_{name}"] = float((crack_scores(decoded) >= row["crack_threshold"]).mean())
    return {key: (round(float(value), 6) if isinstance(value, (float, np.floating)) else value)
            for key, value in row.items()}


def run_one(config: dict, artifacts_dir: str, threads: int | None = None) -> dict:
    """Train (or resume, or load) one configuration in `artifacts_dir/<key>/` and measure it: one table row.

    Never raises: an error is recorded in the row's `error` column, so one bad run does not stop a study.
    `threads`: TensorFlow's threads in this process (set before TensorFlow starts; Dask workers pass theirs).
    """
    started = time.perf_counter()
    row = {"key": "", **config, "version": STUDY_VERSION, "error": "", "worker": os.uname().nodename}
    try:
        if threads:
            _limit_threads(threads)
        from vae_overlay import train

        images = training_images(config["data"], config["image_size"])
        row["key"] = run_key(config)
        folder = Path(artifacts_dir) / row["key"]
        vae, history = train.train_vae(images, folder, verbose=0, **{key: config[key] for key in TRAIN_KEYS})
        record = train.read_history(folder / train.HISTORY_FILE)
        row.update(n_images=len(images), final_reconstruction=round(history["reconstruction_loss"][-1], 4),
                   final_kl=round(history["kl_loss"][-1], 4), train_seconds=round(sum(record["epoch_seconds"]), 2),
                   **measure(vae, images))
    except Exception as error:  # recorded, not raised: the other runs go on
        row["error"] = f"{type(error).__name__}: {error}"[:500]
    row["wall_seconds"] = round(time.perf_counter() - started, 2)
    return row


def _limit_threads(threads: int) -> None:
    import tensorflow as tf

    try:  # only possible before TensorFlow's runtime starts in this process
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass


# ----------------------------------------------------------------------------- the table

def table_path(name: str, results_dir: str | Path) -> Path:
    return Path(results_dir) / "studies" / f"{name}.csv"


def read_table(path: str | Path) -> list[dict]:
    """The rows of a study table (values parsed back to numbers and booleans); [] if there is none yet."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = [{key: _parse(value, key) for key, value in row.items() if value != "" or key in TEXT_COLUMNS}
                for row in csv.DictReader(handle)]  # an empty cell is a value the run did not record
    versions = {row.get("version") for row in rows}
    if versions - {STUDY_VERSION}:
        raise StudyError(f"{path} was written by study version(s) {sorted(map(str, versions))}, this code is version "
                         f"{STUDY_VERSION}: its rows are not comparable. Move it away (or delete it) and run the "
                         "study again.")
    return rows


def write_table(path: str | Path, rows: list[dict]) -> None:
    """All rows, one per key, sorted like the grid, written atomically (a crash leaves the old table)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    runs.atomic_write_text(path, buffer.getvalue())


TEXT_COLUMNS = ("key", "data", "loss", "error", "worker")


def _parse(value: str, column: str = ""):
    if column in TEXT_COLUMNS:
        return value
    if value in ("True", "False"):
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


# ----------------------------------------------------------------------------- verdicts as distributions

def reach(row: dict) -> float:
    """The largest |latent mean| of a run over z1 and z2: how far its encodings spread from the origin."""
    return max(abs(row[f"z{d}_{end}"]) for d in (1, 2) for end in ("min", "max"))


def summarize(rows: list[dict], by=("data", "image_size", "loss")) -> list[dict]:
    """One dict per configuration (`by`): finished runs; collapse, one-axis, two-axis and box-reached counts with
    their rates and 95 % Wilson intervals (scipy.stats.binomtest); median and largest reach; median crack-region
    fractions. Failed runs are left out."""
    from scipy import stats

    groups: dict = {}
    for row in rows:
        if not row.get("error"):
            groups.setdefault(tuple(row[key] for key in by), []).append(row)
    summary = []
    for values, group in sorted(groups.items()):
        entry = {**dict(zip(by, values)), "runs": len(group)}
        flags = {"collapsed": [r["collapsed"] for r in group], "one_axis": [r["active_units"] == 1 for r in group],
                 "two_axes": [r["active_units"] == 2 for r in group], "box_reached": [r["box_reached"] for r in group]}
        for name, hits in flags.items():
            interval = stats.binomtest(sum(hits), len(hits)).proportion_ci(method="wilson")
            entry.update({name: sum(hits), f"{name}_rate": sum(hits) / len(hits), f"{name}_low": float(interval.low),
                          f"{name}_high": float(interval.high)})
        reaches = [reach(r) for r in group]
        entry.update(reach_median=float(np.median(reaches)), reach_max=float(max(reaches)))
        for region in ("box", "occupied"):
            entry[f"crack_fraction_{region}_median"] = float(np.median([r[f"crack_fraction_{region}"] for r in group]))
        summary.append(entry)
    return summary


def load_run(row: dict, artifacts_dir) -> tuple:
    """(vae, training images) of a study row: its model loaded from `artifacts_dir/<key>/`, or trained again there
    (same settings and seed, so the same model on this CPU) when this checkout does not have it."""
    from vae_overlay import train

    images = training_images(row["data"], row["image_size"])
    vae, _ = train.train_vae(images, Path(artifacts_dir) / row["key"], verbose=0, **{key: row[key] for key in TRAIN_KEYS})
    return vae, images


# ----------------------------------------------------------------------------- the study on Dask

def connect(scheduler: str | None = None, n_workers: int | None = None, threads_per_worker: int = 1):
    """(Dask client, the LocalCluster it started or None). `scheduler` (or DASK_SCHEDULER_ADDRESS): the address of
    a running scheduler, whose workers must see the same artifacts folder; otherwise a LocalCluster of
    `n_workers` processes (default: the machine's cores / `threads_per_worker`), one task at a time each."""
    from dask.distributed import Client, LocalCluster

    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        return Client(address), None
    n_workers = n_workers or max(1, (os.cpu_count() or 1) // threads_per_worker)
    threads = str(threads_per_worker)
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           env={"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads,
                                "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": threads})
    return Client(cluster), cluster


def run_study(name: str, results_dir="results", artifacts_dir="artifacts/studies", grid: dict | None = None,
              scheduler: str | None = None, n_workers: int | None = None, threads_per_worker: int = 1,
              progress: bool = True) -> list[dict]:
    """Run the runs of study `name` (grid `GRIDS[name]` unless `grid` is given) that its table lacks; return
    the table's rows in grid order. See the module docstring for where results go and how it resumes."""
    if grid is None and name not in GRIDS:
        raise StudyError(f"unknown study {name!r}; known: {sorted(GRIDS)} (or pass grid=...)")
    grid = GRIDS[name] if grid is None else grid
    configs = configurations(grid)
    path, artifacts_dir = table_path(name, results_dir), str(Path(artifacts_dir).resolve())
    rows = {row["key"]: row for row in read_table(path)}
    keyed = {run_key(config): config for config in configs}
    todo = [(key, config) for key, config in keyed.items() if key not in rows or rows[key].get("error")]
    runs.atomic_write_text(path.with_suffix(".grid.json"), json.dumps(
        {"name": name, "grid": grid, "paper_settings": PAPER, "version": STUDY_VERSION, "runs": len(configs),
         "keys": list(keyed)}, indent=1) + "\n")
    hours = estimated_seconds([config for _, config in todo]) / 3600
    print(f"study {name!r}: {len(configs)} runs in the grid, {len(configs) - len(todo)} in {path}, {len(todo)} to run; "
          f"expected cost about {hours:.1f} h of training on one idle 2-core machine (less with more machines)",
          flush=True)

    def ordered():
        return [rows[key] for key in keyed if key in rows] + [row for key, row in rows.items() if key not in keyed]

    if not todo:
        return ordered()
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    client, cluster = connect(scheduler, n_workers, threads_per_worker)
    try:
        futures = {client.submit(run_one, config, artifacts_dir, threads_per_worker, pure=False): (key, config)
                   for key, config in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc=name, unit="run", disable=not progress):
            key, config = futures[future]
            try:
                row = future.result()
            except Exception as error:  # e.g. KilledWorker: a worker died on this run more than Dask allows
                row = {"key": key, **config, "version": STUDY_VERSION, "error": f"{type(error).__name__}: {error}"}
            rows[key] = row
            write_table(path, ordered())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return ordered()


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Run (or resume) a study; its table goes to results/studies/.")
    parser.add_argument("name", choices=sorted(GRIDS))
    parser.add_argument("--results", default="results")
    parser.add_argument("--artifacts", default="artifacts/studies")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    parser.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads per worker")
    args = parser.parse_args(argv)
    rows = run_study(args.name, args.results, args.artifacts, scheduler=args.scheduler, n_workers=args.workers,
                     threads_per_worker=args.threads)
    failed = [row for row in rows if row.get("error")]
    print(f"{len(rows) - len(failed)} runs in {table_path(args.name, args.results)}, {len(failed)} failed"
          + "".join(f"\n  {row['key']}: {row['error']}" for row in failed[:10]))


if __name__ == "__main__":
    main()
