"""`make reproduce`: the plan printed before a run (`preflight`: images found and skipped, the
notebooks and their estimated time on this machine, the smallest image set accepted) and the run
itself (`reproduce`: each notebook executed with papermill, its outputs cleaned, one console line
per notebook, then REPORT.md and the README's findings). Which run, which notebooks and where are
`vae_overlay.config`'s.

    python -m vae_overlay.reproduce                                   # the committed notebooks
    python -m vae_overlay.reproduce DATASET=data/mine IMAGE_SIZE=128  # a run under runs/<name>/
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from vae_overlay import data, datasets
from vae_overlay.config import (
    DEFAULTS,
    FOLDERS,
    NOTEBOOK_DIR,
    ROOT,
    Run,
    number,
    parameters,
    parse_assignments,
    plan,
)
from vae_overlay.runs import atomic_write_text

# one minibatch at the paper's settings: a smaller image set is refused before anything runs
MIN_IMAGES = 10
# Notebook 04's full sweep and notebook 06 measured as multiples of one training step at 64 px on
# the same machine (2026-11-29: the sweep 149 s and 06 6:28 where a step took about 0.05 s);
# notebooks' own overhead ~15 s each.
STEP_EQUIVALENTS = {"04 sweep": 3000, "06": 7800}
NOTEBOOK_OVERHEAD_S = 15


def seconds_per_step(image_size: int, batch_size: int = 10, repeats: int = 5) -> float:
    """Seconds of one training step of the paper's model at `image_size` on this machine, timed
    after tracing."""
    from vae_overlay import checkpoint, train

    images = np.random.default_rng(0).random((batch_size, image_size, image_size, 1), np.float32)
    step = train.make_train_step(
        checkpoint.new_vae(train.run_settings(images, batch_size=batch_size), images)
    )
    step(images).numpy()
    started = time.perf_counter()
    for _ in range(repeats):
        step(images).numpy()
    return (time.perf_counter() - started) / repeats


def preflight(run: Run, step_seconds: float | None = None) -> str:
    """What `make reproduce` says before it trains anything: the images found and skipped (a
    folder), the notebooks that run and the ones skipped, and the estimated time on this machine
    (from one timed training step). Raises DatasetError naming the folder when it holds fewer than
    MIN_IMAGES usable images."""
    values = {**{k: v for d in DEFAULTS.values() for k, v in d.items()}, **run.parameters}
    lines = []
    count = 80  # the built-in sets
    if values["DATASET"] not in datasets.BUILT_IN:
        # every file decoded once, small: what notebook 01 will use
        loaded = data.load_folder(values["DATASET"], 16)
        count = len(loaded.images)
        lines.append(
            f"images: {count} usable in {values['DATASET']}, {len(loaded.skipped)} skipped"
            + "".join(f"\n  skipped {name}: {why}" for name, why in loaded.skipped[:10])
        )
        if count < MIN_IMAGES:
            raise data.DatasetError(
                f"{values['DATASET']} has {count} usable image(s); a run needs at least "
                f"{MIN_IMAGES} (one minibatch of the paper's training). Add images and run again."
            )
    step = step_seconds if step_seconds is not None else seconds_per_step(values["IMAGE_SIZE"])
    batch = values["BATCH_SIZE"]
    estimate = {
        "01": 0.0,
        "02": -(-count // batch) * values["EPOCHS"] * step,
        "03": 0.0,
        "04": STEP_EQUIVALENTS["04 sweep"] * step if values["FULL_SWEEP"] else 0.0,
        "05": 2 * -(-3 * values["COPIES"] // batch) * values["OVERLAY_EPOCHS"] * step,
        "05b": 0.0,
        "06": STEP_EQUIVALENTS["06"] * step,
        "07": 0.0,
    }
    shown = [(number(path), estimate[number(path)] + NOTEBOOK_OVERHEAD_S) for path in run.notebooks]
    total = sum(seconds for _, seconds in shown)
    lines.append(
        "notebooks: "
        + ", ".join(
            (
                f"{number} (~{seconds / 60:.0f} min)"
                if seconds >= 90
                else f"{number} (~{seconds:.0f} s)"
            )
            for number, seconds in shown
        )
    )
    lines.extend(f"skipped {name}: {why}" for name, why in run.skipped.items())
    lines.append(
        f"estimated time on this machine: about {total / 60:.0f} min (one training step here takes "
        f"{1000 * step:.0f} ms; finished trainings are reloaded, not repeated)"
    )
    return "\n".join(lines)


def _papermill():
    """papermill, imported once TensorFlow's C++ log level is set (before TensorFlow starts here or
    in a kernel), with its parameter-parsing warnings not shown."""
    if not os.environ.get("TF_CPP_MIN_LOG_LEVEL"):  # before TensorFlow starts here or in a kernel
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import papermill

    # "Unable to parse line ..." of comments
    logging.getLogger("papermill.translators").setLevel(logging.ERROR)
    return papermill


@contextlib.contextmanager
def _kernels_stderr(log):
    """Standard error (file descriptor 2, which the kernels inherit) to `log` while a notebook
    runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _own_log():
    """This process's own standard error to a temporary file while it plans the run (its
    TensorFlow start, as the plan times one training step, logs there, not on the console): the
    file is named on the console when planning fails and deleted otherwise."""
    own_log = tempfile.NamedTemporaryFile("w", prefix="reproduce-", suffix=".log", delete=False)
    try:
        with own_log, _kernels_stderr(own_log):
            yield
    except BaseException:
        print(f"(this process's own log: {own_log.name})", file=sys.stderr)
        raise
    Path(own_log.name).unlink(missing_ok=True)


def _output_folders(run: Run, notebook_dir, results_dir) -> tuple[Path, Path]:
    """(the executed notebooks' folder, the results folder): the committed ones for the default
    run; a run's own folder (made here, with its run.yaml) for any other."""
    if run.is_default:
        return Path(notebook_dir), Path(results_dir)
    out_dir = run.folder / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.folder / "run.yaml", yaml.safe_dump(run.parameters, sort_keys=True))
    return out_dir, run.folder


def _execute_notebook(
    papermill, path: Path, output: Path, run: Run, notebook_dir, progress: bool, started: float
) -> None:
    """Execute the notebook `path` into `output` with the run's values of its parameters, the
    kernel's standard error in a temporary log (deleted when it succeeds). A notebook that stops
    ends its console line (minutes since `started`) and raises RuntimeError naming its outputs and
    the log."""
    # the run's values of the names this notebook has (the others mean nothing to it)
    own = parameters(path)
    log = tempfile.NamedTemporaryFile(
        "w", prefix=f"{path.stem}-kernel-", suffix=".log", delete=False
    )
    try:
        with log, _kernels_stderr(log):
            papermill.execute_notebook(
                str(path),
                str(output),
                cwd=str(notebook_dir),
                parameters={k: v for k, v in run.parameters.items() if k in own},
                progress_bar=progress,
                kernel_name="python3",
            )
    except papermill.PapermillExecutionError as error:
        print(f" stopped after {(time.perf_counter() - started) / 60:.1f} min", flush=True)
        raise RuntimeError(
            f"{path.name} stopped with {error.ename}: {error.evalue}\nThe notebook, with its "
            f"outputs up to the error, is {output} (the kernel's own log: {log.name}); fix the "
            "cause and run the same command again (finished trainings are reloaded)."
        ) from None
    Path(log.name).unlink(missing_ok=True)


def reproduce(
    changes: dict,
    runs_dir: str | Path = ROOT / "runs",
    notebook_dir: str | Path = NOTEBOOK_DIR,
    results_dir: str | Path = ROOT / "results",
    progress: bool = False,
) -> Run:
    """Execute a run's notebooks with papermill, clean their outputs and write its REPORT.md.

    The console gets the plan (`preflight`), one line per notebook (name, minutes, status) and the
    paths written. The kernels' own standard error (TensorFlow's C++ log, which TensorFlow 2.21
    writes before its log level takes effect) goes to a temporary file, named when a notebook fails
    and deleted otherwise; papermill's parameter-parsing warnings are not shown. `progress`:
    papermill's per-cell progress bars too."""
    papermill = _papermill()
    with _own_log():  # what importing these and planning start (TensorFlow) logs goes there too
        from vae_overlay import notebook_clean, report

        run = plan(changes, runs_dir, notebook_dir)
        plan_text = preflight(run)
    out_dir, results = _output_folders(run, notebook_dir, results_dir)
    print(f"run {run.name}: {len(run.notebooks)} notebooks -> {out_dir}", flush=True)
    print(plan_text, flush=True)
    timings = {}
    for path in run.notebooks:
        print(f"{path.name} ...", end="", flush=True)
        output, started = out_dir / path.name, time.perf_counter()
        _execute_notebook(papermill, path, output, run, notebook_dir, progress, started)
        notebook_clean.clean_notebook(output)
        timings[number(path)] = round(time.perf_counter() - started, 1)
        print(f" {timings[number(path)] / 60:.1f} min, ok", flush=True)
    report.record("reproduce", {"notebook_seconds": timings}, results)
    written = report.write_report(results)
    figures = Path(run.parameters.get("FIGURES_DIR", Path(results) / "figures"))
    print(
        f"wrote: notebooks in {out_dir}, figures in {figures}, {Path(results) / 'summary.json'},"
        f" {written}"
    )
    return run


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Run the notebook series (make reproduce).")
    parser.add_argument(
        "assignments",
        nargs="*",
        help="NAME=value parameters, e.g. DATASET=data/mine IMAGE_SIZE=128",
    )
    parser.add_argument("--config", help="a run.yaml (NAME: value lines); command-line values win")
    parser.add_argument("--runs-dir", default=str(ROOT / "runs"))
    args = parser.parse_args(argv)
    changes = yaml.safe_load(Path(args.config).read_text()) or {} if args.config else {}
    changes = {k: v for k, v in changes.items() if k not in FOLDERS}
    changes.update(parse_assignments(args.assignments))
    try:
        reproduce(changes, args.runs_dir)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        sys.exit(f"make reproduce: {error}")


if __name__ == "__main__":
    main()
