"""How training cost grows with the number of images: throughput and peak memory for 80, 800, 8,000 images.

Each size runs in its own subprocess (so peak RSS is that size's own), with synthetic crack images
generated on the fly (vae_overlay.synth) at 64 px, the paper's minibatch 10 and RMSprop 2e-3, for
--epochs epochs through train_vae (in-memory path). The streaming tf.data path of issue 7 does not
exist yet; when it does, add it as a second column here.

    .venv/bin/python benchmarks/scale.py [--sizes 80 800 8000] [--epochs 2]
"""
import argparse
import json
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from vae_overlay import model, synth

    n, epochs, run_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    started = time.perf_counter()
    images, _, _ = synth.make_dataset(n, size=64, seed=0, kinds=("crack",), crack_fraction=1.0)
    generate_seconds = time.perf_counter() - started
    _, history = model.train_vae(images, run_dir, epochs=epochs, batch_size=10, verbose=0)
    record = json.load(open(run_dir + "/history.json"))
    seconds = record["epoch_seconds"][1:] or record["epoch_seconds"]  # the first epoch includes tracing
    print(json.dumps({"n": n, "generate_seconds": generate_seconds,
                      "epoch_seconds": sum(seconds) / len(seconds),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[80, 800, 8000])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as run_dir:
            out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(args.epochs), run_dir],
                                 capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        row = rows[-1]
        print(f"n={n:6d}  epoch {row['epoch_seconds']:7.2f} s  {n / row['epoch_seconds']:7.0f} images/s  "
              f"peak RSS {row['peak_rss_mb']:6.0f} MB  (generating the images: {row['generate_seconds']:.1f} s)",
              flush=True)
    base = rows[0]
    for row in rows[1:]:
        print(f"x{row['n'] / base['n']:.0f} images -> x{row['epoch_seconds'] / base['epoch_seconds']:.1f} epoch time, "
              f"+{row['peak_rss_mb'] - base['peak_rss_mb']:.0f} MB peak RSS")


if __name__ == "__main__":
    main()
