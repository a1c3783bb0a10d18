"""Study throughput: runs per hour of one grid, on a Dask LocalCluster of 1 worker x 2 threads, of 2
workers x 1 thread, and in a plain sequential loop (no Dask, TensorFlow's default threads), in one
benchmark run.

Every mode trains the same configurations from scratch (its own empty artifacts folder, so nothing
is loaded from a cache) through `study.run_one`, the function the Dask workers run, and measures
them the same way. The grid is the Section 3 study's, shortened: `--runs` seeds of the ELPV crack
cells at 64 px, loss "sum", `--epochs` epochs (the full study trains 100; the cost per run scales
with epochs, the ratio between modes hardly).

    .venv/bin/python benchmarks/study_throughput.py [--runs 6] [--epochs 20]
"""

import argparse
import os
import tempfile
import time

from vae_overlay import study


def timed(mode, grid, work):
    started = time.perf_counter()
    if mode == "sequential loop":
        rows = [study.run_one(config, work) for config in study.configurations(grid)]
    else:
        workers, threads = (1, 2) if mode == "1 worker x 2 threads" else (2, 1)
        rows = study.run_study(
            "bench",
            work,
            work + "/art",
            grid=grid,
            n_workers=workers,
            threads_per_worker=threads,
            progress=False,
        )
    seconds = time.perf_counter() - started
    errors = [row["error"] for row in rows if row.get("error")]
    assert not errors, errors
    return seconds, sum(row["train_seconds"] for row in rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    grid = {
        "seed": list(range(args.runs)),
        "image_size": [64],
        "loss": ["sum"],
        "data": ["elpv-cracks"],
        "epochs": [args.epochs],
    }
    print(
        f"{args.runs} runs x {args.epochs} epochs (80 ELPV cells, 64 px); {os.cpu_count()} CPUs; "
        f"load average at start {os.getloadavg()}"
    )
    results = {}
    for mode in ("sequential loop", "1 worker x 2 threads", "2 workers x 1 thread"):
        with tempfile.TemporaryDirectory() as work:
            seconds, train_seconds = timed(mode, grid, work)
        results[mode] = seconds
        print(
            f"{mode:22s} {seconds:7.1f} s wall, {3600 * args.runs / seconds:6.1f} runs/h "
            f"(training {train_seconds:.1f} s summed over runs)",
            flush=True,
        )
    base = results["sequential loop"]
    print(
        "ratio of runs/h to the sequential loop: "
        + ", ".join(f"{mode} {base / seconds:.2f}" for mode, seconds in results.items())
    )
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
