"""Studies: a named grid of trainings, each run once on Dask, measured, and kept as one row of a
table.

At these settings one training is one draw from a wide distribution (the same data and settings
collapse in one seed and spread along two latent axes in another), so every verdict is measured over
a grid. A study has a `Kind` (what one run trains and measures), registered by the module that
defines it (`register`: `section3` in section3_study.py, `section4` in overlay_study.py,
`classifier` in classifier_study.py; the runner imports a built-in kind's module when it is first
named), and a grid of settings (`GRIDS`, read from `grids.yaml`). `run_study(name)`:

* expands the grid; unknown keys or values are refused before anything runs;
* keys every run by the fingerprint of its full configuration and of its training data, so a
  finished run is never recomputed, whichever grid asks for it (one that another table of the
  results folder holds is copied from there);
* runs the missing ones on Dask: a `LocalCluster` of worker processes sized to the machine by
  default, or any running scheduler (`scheduler=` or `DASK_SCHEDULER_ADDRESS`) to scale out over
  many machines;
* writes each finished run into `results/studies/<name>.csv` (rewritten atomically after every run)
  and the grid to `<name>.grid.json`. A client killed at any moment loses at most the runs in
  flight; a worker killed mid-training is replaced and its run resumes from its last epoch
  checkpoint (`train.train_vae`); a failing run is recorded with its error (and retried by the next
  call) without stopping the others.

A row holds the run's settings and what its kind measured (section3_study.measure,
overlay_study.run).
"""

from __future__ import annotations

import csv
import importlib
import io
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vae_overlay import runs


@dataclass(frozen=True)
class Kind:
    """A kind of study run, defined and registered (`register`) by its own module: every grid key
    with its default (a grid varies some), the values a key may take (`allowed`), three functions:
    `run(config, artifacts_dir) -> dict` (one training and what is measured on it; may raise),
    `data(config) -> str` (the fingerprint of its training data), `seconds(config) -> float`
    (expected training seconds on one idle 2-core machine). `text_columns`: the kind's table
    columns that stay text when read back. `version`: bump when a measurement changes; tables of
    another version are refused, not mixed."""

    defaults: dict
    run: Callable[[dict, str], dict]
    data: Callable[[dict], str]
    seconds: Callable[[dict], float]
    allowed: dict = field(default_factory=dict)
    text_columns: tuple = ()
    version: int = 1


KINDS: dict[str, Kind] = {}  # name -> Kind, filled by `register`
# The kinds that come with the package, by the module that registers each: imported on first use,
# so a caller (the command line, a Dask worker) names a kind without importing its module.
BUILT_IN_KINDS = {
    "section3": "vae_overlay.section3_study",
    "section4": "vae_overlay.overlay_study",
    "classifier": "vae_overlay.classifier_study",
    "classifier-balance": "vae_overlay.classifier_study",
    "realism": "vae_overlay.realism_study",
}
TEXT_COLUMNS = ("key", "error", "worker")  # text in every kind's table, beside its `text_columns`


class StudyError(ValueError):
    """A grid or a study table that cannot be used, with what to do about it."""


def register(name: str, kind: Kind) -> Kind:
    """Make `kind` known to the runner as `name` (its module calls this when it is imported)."""
    KINDS[name] = kind
    return kind


def kind_of(kind: str) -> Kind:
    """The registered Kind called `kind` (a built-in one's module is imported on first use)."""
    if kind not in KINDS and kind in BUILT_IN_KINDS:
        importlib.import_module(BUILT_IN_KINDS[kind])
    if kind not in KINDS:
        known = sorted(set(KINDS) | set(BUILT_IN_KINDS))
        raise StudyError(f"unknown kind of study {kind!r}; known: {known}")
    return KINDS[kind]


GRIDS_FILE = Path(__file__).with_name("grids.yaml")  # the named grids, with what each is for


def load_grids(path: str | Path = GRIDS_FILE) -> dict:
    """{study name: (kind, grid)} from a grids file (see grids.yaml); an entry without exactly the
    keys `kind` and `grid` is refused, naming it and the file."""
    import yaml

    grids = {}
    for name, entry in (yaml.safe_load(Path(path).read_text()) or {}).items():
        keys = sorted(entry) if isinstance(entry, dict) else entry
        if keys != ["grid", "kind"]:
            raise StudyError(
                f"{path}: study {name!r} needs exactly the keys 'kind' and 'grid', has {keys!r}"
            )
        grids[name] = (entry["kind"], entry["grid"])
    return grids


GRIDS = load_grids()


def configurations(grid: dict, kind: str = "section3") -> list[dict]:
    """Every configuration of `grid` (the kind's defaults, the paper's settings, for keys it does
    not vary), seeds outermost, so that a partly finished study covers every other setting with its
    first seeds."""
    spec = kind_of(kind)
    unknown = sorted(set(grid) - set(spec.defaults))
    if unknown:
        raise StudyError(f"unknown grid key(s) {unknown}; allowed: {list(spec.defaults)}")
    for key, allowed in spec.allowed.items():
        bad = [value for value in grid.get(key, []) if value not in allowed]
        if bad:
            raise StudyError(f"unknown {key} {bad}; allowed: {list(allowed)}")
    axes = {key: list(grid.get(key, [default])) for key, default in spec.defaults.items()}
    if any(not values or None in values for values in axes.values()):
        raise StudyError(f"every grid key needs at least one value: {axes}")
    others = [key for key in spec.defaults if key != "seed"]
    return [
        {"seed": seed, **dict(zip(others, values))}
        for seed in axes["seed"]
        for values in itertools.product(*(axes[key] for key in others))
    ]


def run_key(config: dict, kind: str = "section3") -> str:
    """The fingerprint of a configuration, its training data and its kind's version."""
    spec = kind_of(kind)
    return runs.fingerprint({**config, "images": spec.data(config), "version": spec.version})


def estimated_seconds(configs: list[dict], kind: str = "section3") -> float:
    """Training seconds on one idle 2-core machine for `configs`."""
    return sum(kind_of(kind).seconds(config) for config in configs)


# ----------------------------------------------------------------------------- one run


def run_one(
    config: dict, artifacts_dir: str, threads: int | None = None, kind: str = "section3"
) -> dict:
    """One table row: the kind's run of `config` (trained in `artifacts_dir/<key>/`, or resumed, or
    loaded).

    Never raises: an error is recorded in the row's `error` column, so one bad run does not stop a
    study. `threads`: TensorFlow's threads in this process (set before TensorFlow starts; Dask
    workers pass theirs).
    """
    started = time.perf_counter()
    spec = kind_of(kind)
    row = {"key": "", **config, "version": spec.version, "error": "", "worker": os.uname().nodename}
    try:
        if threads:
            _limit_threads(threads)
        row["key"] = run_key(config, kind)
        row.update(spec.run(config, artifacts_dir))
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


def read_table(path: str | Path, kind: str = "section3") -> list[dict]:
    """The rows of a study table (values parsed back to numbers and booleans); [] if there is none
    yet."""
    path, spec = Path(path), kind_of(kind)
    version, text = spec.version, TEXT_COLUMNS + spec.text_columns
    if not path.is_file():
        return []
    with open(path, newline="") as handle:  # an empty cell is a value the run did not record
        rows = [
            {
                key: value if key in text else _parse(value)
                for key, value in row.items()
                if value != "" or key in text
            }
            for row in csv.DictReader(handle)
        ]
    versions = {row.get("version") for row in rows}
    if versions - {version}:
        raise StudyError(
            f"{path} was written by study version(s) {sorted(map(str, versions))}, this code is"
            f" version {version}: its rows are not comparable. Move it away (or delete it) and run"
            " the study again."
        )
    return rows


def finished_elsewhere(path: Path, keys: set, kind: str) -> dict:
    """{key: row} of the finished runs with one of `keys` in the other study tables beside `path`: a
    key is the fingerprint of the whole configuration, its data and its kind's version, so such a
    row is the same run."""
    found = {}
    for other in sorted(Path(path).parent.glob("*.csv")):
        if other == Path(path) or not keys:
            continue
        try:
            rows = read_table(other, kind)
        except StudyError:  # another version: not the same run
            continue
        found.update(
            {row["key"]: row for row in rows if row.get("key") in keys and not row.get("error")}
        )
    return found


def load_table(name: str, results_dir: str | Path, kind: str | None = None) -> dict:
    """Study `name`'s table as the notebooks read it, missing, partial or complete: {"path", "kind"
    and "grid" (from its grid file, else from GRIDS; None for an unknown study without one),
    "planned" (runs in the grid), "done" (finished rows), "failed" (rows with an error)}; empty
    lists if there is no table yet."""
    path = table_path(name, results_dir)
    grid_file = path.with_suffix(".grid.json")
    meta = json.loads(grid_file.read_text()) if grid_file.is_file() else {}
    known_kind, grid = (meta["kind"], meta["grid"]) if meta else GRIDS.get(name, (None, None))
    kind = kind or known_kind
    rows = read_table(path, kind or "section3")
    if len({row["key"] for row in rows}) != len(rows):
        raise StudyError(
            f"{path} holds a run twice: it was not written by run_study; run the study again"
        )
    planned = meta.get("runs") or (
        len(configurations(grid, kind)) if grid is not None and kind else None
    )
    return {
        "path": path,
        "kind": kind,
        "grid": grid,
        "planned": planned,
        "done": [row for row in rows if not row.get("error")],
        "failed": [row for row in rows if row.get("error")],
    }


def grouped(rows: list[dict], by) -> list[tuple[dict, list[dict]]]:
    """The finished rows (no error) grouped by their values of the keys `by`, sorted: [({key:
    value}, rows)]."""
    groups: dict = {}
    for row in rows:
        if not row.get("error"):
            groups.setdefault(tuple(row[key] for key in by), []).append(row)
    return [(dict(zip(by, values)), group) for values, group in sorted(groups.items())]


def write_table(path: str | Path, rows: list[dict]) -> None:
    """All rows, one per key, sorted like the grid, written atomically (a crash leaves the old
    table)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    runs.atomic_write_text(path, buffer.getvalue())


def _parse(value: str):
    if value in ("True", "False"):
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


# ------------------------------------------------------------------------ verdicts as distributions


def connect(
    scheduler: str | None = None, n_workers: int | None = None, threads_per_worker: int = 1
):
    """(Dask client, the LocalCluster it started or None). `scheduler` (or DASK_SCHEDULER_ADDRESS):
    the address of a running scheduler, whose workers must see the same artifacts folder; otherwise
    a LocalCluster of `n_workers` processes (default: the machine's cores / `threads_per_worker`),
    one task at a time each."""
    import dask
    from dask.distributed import Client, LocalCluster

    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        return Client(address), None
    n_workers = n_workers or max(1, (os.cpu_count() or 1) // threads_per_worker)
    threads = str(threads_per_worker)
    # No heartbeat limit: a local study's processes pause together (a laptop asleep, `kill -STOP`),
    # and after a pause over the default 5 minutes the scheduler would restart its workers and throw
    # away their runs in progress.
    with dask.config.set({"distributed.scheduler.worker-ttl": None}):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={
                "TF_NUM_INTRAOP_THREADS": threads,
                "TF_NUM_INTEROP_THREADS": threads,
                "TF_CPP_MIN_LOG_LEVEL": "3",
                "OMP_NUM_THREADS": threads,
            },
        )
    return Client(cluster), cluster


def run_study(
    name: str,
    results_dir="results",
    artifacts_dir="artifacts/studies",
    grid: dict | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    progress: bool = True,
    kind: str = "section3",
) -> list[dict]:
    """Run the runs of study `name` (kind and grid `GRIDS[name]` unless `grid` is given, of `kind`)
    that its table lacks; return the table's rows in grid order. See the module docstring for where
    results go and how it resumes."""
    if grid is None and name not in GRIDS:
        raise StudyError(f"unknown study {name!r}; known: {sorted(GRIDS)} (or pass grid=...)")
    kind, grid = GRIDS[name] if grid is None else (kind, grid)
    configs = configurations(grid, kind)
    path, artifacts_dir = table_path(name, results_dir), str(Path(artifacts_dir).resolve())
    rows = {row["key"]: row for row in read_table(path, kind)}
    keyed = {run_key(config, kind): config for config in configs}
    borrowed = finished_elsewhere(path, set(keyed) - set(rows), kind)
    rows.update(borrowed)
    if borrowed:
        write_table(path, [rows[key] for key in keyed if key in rows])
        print(
            f"study {name!r}: {len(borrowed)} finished runs with the same keys taken from the other"
            f" tables in {path.parent}",
            flush=True,
        )
    todo = [
        (key, config) for key, config in keyed.items() if key not in rows or rows[key].get("error")
    ]
    runs.atomic_write_text(
        path.with_suffix(".grid.json"),
        json.dumps(
            {
                "name": name,
                "kind": kind,
                "grid": grid,
                "defaults": kind_of(kind).defaults,
                "version": kind_of(kind).version,
                "runs": len(configs),
                "keys": list(keyed),
            },
            indent=1,
        )
        + "\n",
    )
    hours = estimated_seconds([config for _, config in todo], kind) / 3600
    print(
        f"study {name!r}: {len(configs)} runs in the grid, {len(configs) - len(todo)} in {path},"
        f" {len(todo)} to run; expected cost about {hours:.1f} h of training on one idle 2-core"
        " machine (less with more machines)",
        flush=True,
    )

    def ordered():
        return [rows[key] for key in keyed if key in rows] + [
            row for key, row in rows.items() if key not in keyed
        ]

    if not todo:
        return ordered()
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    client, cluster = connect(scheduler, n_workers, threads_per_worker)
    try:
        futures = {
            client.submit(run_one, config, artifacts_dir, threads_per_worker, kind, pure=False): (
                key,
                config,
            )
            for key, config in todo
        }
        for future in tqdm(
            as_completed(futures), total=len(futures), desc=name, unit="run", disable=not progress
        ):
            key, config = futures[future]
            try:
                row = future.result()
            except (
                Exception
            ) as error:  # e.g. KilledWorker: a worker died on this run more than Dask allows
                row = {
                    "key": key,
                    **config,
                    "version": kind_of(kind).version,
                    "error": f"{type(error).__name__}: {error}",
                }
            rows[key] = row
            write_table(path, ordered())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return ordered()


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description=(
            "Run (or resume) studies, one after another; each table goes to "
            "results/studies/<name>.csv."
        )
    )
    parser.add_argument(
        "names", nargs="+", metavar="name", help=f"one of {sorted(GRIDS)}, or of --grids"
    )
    parser.add_argument(
        "--grids", help="a YAML file of your own grids, laid out as vae_overlay/grids.yaml"
    )
    parser.add_argument("--results", default="results")
    parser.add_argument("--artifacts", default="artifacts/studies")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    parser.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads per worker")
    args = parser.parse_args(argv)
    grids = {**GRIDS, **(load_grids(args.grids) if args.grids else {})}
    if unknown := [name for name in args.names if name not in grids]:
        parser.error(f"unknown study {', '.join(unknown)}: known are {sorted(grids)}")
    for name in args.names:  # every grid is checked before the first study runs
        kind, grid = grids[name]
        try:
            configurations(grid, kind)
        except StudyError as error:
            raise StudyError(f"study {name!r} ({args.grids or GRIDS_FILE}): {error}") from None
    for name in args.names:
        kind, grid = grids[name]
        rows = run_study(
            name,
            args.results,
            args.artifacts,
            grid=grid,
            kind=kind,
            scheduler=args.scheduler,
            n_workers=args.workers,
            threads_per_worker=args.threads,
        )
        failed = [row for row in rows if row.get("error")]
        print(
            f"{len(rows) - len(failed)} runs in {table_path(name, args.results)}, {len(failed)}"
            " failed" + "".join(f"\n  {row['key']}: {row['error']}" for row in failed[:10])
        )


if __name__ == "__main__":
    # `python -m vae_overlay.study` runs this file as `__main__`, a second copy of the module,
    # while the kinds register themselves in `vae_overlay.study` when their modules import it:
    # the command line must run that copy, or it would know no kind at all.
    from vae_overlay import study

    study.main()
