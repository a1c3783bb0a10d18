"""How training cost grows with the number of images, in memory and streamed: throughput and peak
memory.

For each size (default 80, 800, 8,000) a folder of synthetic crack images (vae_overlay.synth, 96 px
PNG files, generated on the fly in a temporary folder) is trained on at 64 px, the paper's minibatch
10 and RMSprop 2e-3, for --epochs epochs through train_vae, twice, each in its own subprocess so
that peak RSS is that run's own:

* in memory: data.load_folder decodes every file into one float32 array, then train_vae(array);
* streaming: stream.ImageStream decodes every file once through tf.data into a disk cache, then
  train_vae(stream) reads each minibatch from the cache (tf.data, prefetched).

Epoch time is the mean of the epochs after the first (which includes tracing); "prepare" is the
decoding.

    .venv/bin/python benchmarks/scale.py [--sizes 80 800 8000] [--epochs 3]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vae_overlay import synth

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from vae_overlay import data, stream, train

    mode, folder, epochs, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    started = time.perf_counter()
    if mode == "memory":
        images = data.load_folder(folder, 64).images
    else:
        images = stream.ImageStream(folder, 64, work + "/cache", verbose=0)
    prepare_seconds = time.perf_counter() - started
    train.train_vae(images, work + "/run", epochs=epochs, batch_size=10, verbose=0)
    record = json.load(open(work + "/run/history.json"))
    seconds = record["epoch_seconds"][1:] or record["epoch_seconds"]
    print(json.dumps({"prepare_seconds": prepare_seconds,
                      "epoch_seconds": sum(seconds) / len(seconds),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def write_folder(folder: Path, n: int) -> None:
    for start in range(0, n, 500):  # in chunks, so that the generator's memory stays small
        images, _, _ = synth.make_dataset(
            min(500, n - start), size=96, seed=start, kinds=("crack",), crack_fraction=1.0
        )
        for i, image in enumerate(images):
            Image.fromarray(np.round(image[..., 0] * 255).astype(np.uint8)).save(
                folder / f"crack_{start + i:06d}.png"
            )


def run(mode: str, folder: Path, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as work:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(folder), str(epochs), work],
            capture_output=True,
            text=True,
        )
    if out.returncode:
        sys.exit(f"{mode} run on {folder} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[80, 800, 8000])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    print(f"{'images':>7} {'path':>9} {'prepare':>9} {'epoch':>9} {'images/s':>9} {'peak RSS':>9}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as root:
            folder = Path(root) / "images"
            folder.mkdir()
            started = time.perf_counter()
            write_folder(folder, n)
            written = time.perf_counter() - started
            for mode in ("memory", "streaming"):
                row = {"n": n, "mode": mode, **run(mode, folder, args.epochs)}
                rows.append(row)
                print(
                    f"{n:7d} {mode:>9} {row['prepare_seconds']:8.1f}s {row['epoch_seconds']:8.2f}s "
                    f"{n / row['epoch_seconds']:9.0f} {row['peak_rss_mb']:7.0f}MB",
                    flush=True,
                )
        print(f"        (writing the {n} PNG files took {written:.1f} s)")
    for mode in ("memory", "streaming"):
        base, *rest = [row for row in rows if row["mode"] == mode]
        for row in rest:
            print(
                f"{mode}: x{row['n'] / base['n']:.0f} images ->"
                f" x{row['epoch_seconds'] / base['epoch_seconds']:.1f} epoch time,"
                f" {row['peak_rss_mb'] - base['peak_rss_mb']:+.0f} MB peak RSS"
            )
    for n in args.sizes:
        memory, streaming = (row for row in rows if row["n"] == n)
        print(
            f"n={n}: streaming/in-memory epoch time"
            f" {streaming['epoch_seconds'] / memory['epoch_seconds']:.2f}"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
