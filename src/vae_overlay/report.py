"""The reproduction report: notebooks record their key numbers; `make reproduce` writes REPORT.md.

Also the cleaner for executed notebooks (`clean_notebook`): committed outputs carry no TensorFlow C++ log noise and
no path of the machine that ran them.

    python -m vae_overlay.report [results]                  # write results/REPORT.md from results/summary.json
    python -m vae_overlay.report --clean notebooks/*.ipynb  # clean executed notebooks in place
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from vae_overlay.runs import atomic_write_text


def _plain(value):
    """numpy scalars/arrays and paths -> JSON-serialisable Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def record(notebook: str, values: dict, results_dir: str | Path = "../results") -> Path:
    """Merge `values` under `notebook` into results/summary.json (atomically) and return its path."""
    path = Path(results_dir) / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary[notebook] = _plain(values)
    atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return path


def _get(summary: dict, notebook: str, key: str, default=None):
    return summary.get(notebook, {}).get(key, default)


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_fmt(v, digits) for v in value) + ")"
    return str(value)


def _claims(summary: dict) -> list[tuple[str, str, str, str]]:
    """(claim, what the paper says, what we measured, figures) for every claim of the paper."""
    missing = "not measured: run notebook {} (make reproduce)"
    rows = []

    def measured(notebook, text):
        return text if notebook in summary else missing.format(notebook[:2])

    s01, s02, s03, s04, s05, s06 = ("01_prepare_dataset", "02_train_vae", "03_latent_distribution",
                                    "04_sample_latent_space", "05_overlay_defects", "06_augment_classifier")
    rows.append(("Fig. 1 — training set", "80 grayscale crack images; broken lines, surface texture, sharp transitions",
                 measured(s01, f"{_get(summary, s01, 'images')} images of {_get(summary, s01, 'dataset')} at "
                          f"{_get(summary, s01, 'image_size')} px"), ", ".join(_get(summary, s01, "figures", []))))
    rows.append(("Training (§3)", "keras.io VAE, latent dim 2, 100 epochs, minibatch 10, RMSprop 2e-3",
                 measured(s02, f"{_get(summary, s02, 'epochs')} epochs in {_fmt(_get(summary, s02, 'train_seconds'), 0)} s "
                          f"on 2 CPU cores; final loss {_fmt(_get(summary, s02, 'final_loss'), 1)} = reconstruction "
                          f"{_fmt(_get(summary, s02, 'final_reconstruction'), 1)} + KL "
                          f"{_fmt(_get(summary, s02, 'final_kl'), 2)}"),
                 ", ".join(_get(summary, s02, "figures", []))))
    rows.append(("Latent spread (Fig. 2)", "means spread to about ±15 (z₁) and ±10 (z₂)", measured(
        s02, f"z min {_fmt(_get(summary, s02, 'latent_min'))}, max {_fmt(_get(summary, s02, 'latent_max'))}"), ""))
    rows.append(("Fig. 2 — distribution", "resembles a normal distribution with zero expectation",
                 measured(s03, f"mean {_fmt(_get(summary, s03, 'mean'))}, std {_fmt(_get(summary, s03, 'std'))}, "
                          f"Shapiro–Wilk p {_fmt(_get(summary, s03, 'shapiro_p'), 3)}"),
                 ", ".join(_get(summary, s03, "figures", []))))
    rows.append(("Fig. 3 — latent sampling", "grid over [−15,15]×[−10,10] step 0.1; mainly abrupt transitions encoded",
                 measured(s04, f"{_get(summary, s04, 'sweep_images')} images decoded in "
                          f"{_fmt(_get(summary, s04, 'sweep_seconds'), 0)} s"),
                 ", ".join(_get(summary, s04, "figures", []))))
    rows.append(("Continuity (§3)", "one image transforms rather smoothly into another",
                 measured(s04, f"largest step / mean step along a latent path: {_fmt(_get(summary, s04, 'smoothness'))} "
                          "(1.0 = perfectly even)"), ""))
    paper, fixed = _get(summary, s05, "paper_recipe") or {}, _get(summary, s05, "fixed_variant") or {}
    fidelity = _get(summary, s05, "fidelity_mean_score") or {}
    studies = _get(summary, s05, "studies") or {}

    def over(part):
        found = studies.get(part) or {}
        return f"{found.get('runs_finished', 0)} of {found.get('runs_planned') or '?'} runs of study {found.get('study', part)!r}"

    def diff(entry, method, score="fidelity"):
        values = [entry.get(f"{score}|{method}|{end}", float("nan")) for end in ("diff", "low", "high")]
        return f"{method} {_fmt(values[0])} [{_fmt(values[1])}, {_fmt(values[2])}]"

    variants = (studies.get("variants") or {}).get("configurations", {})
    rows.append(("Figs. 4–5 — overlay", "one cluster per source, far apart; decode(sum) holds all defects",
                 measured(s05, f"default run — paper's recipe: {paper.get('verdict')} ({paper.get('n_clusters')} cluster(s), "
                          f"separation {_fmt(paper.get('min_separation'))} sd, {paper.get('dead_units')}/16 dead units); "
                          f"fixed variant '{fixed.get('name')}': {fixed.get('verdict')} (separation "
                          f"{_fmt(fixed.get('min_separation'))} sd). Fidelity (1 = every defect, nothing spurious): "
                          + "; ".join(f"{k} {_fmt(v)}" for k, v in fidelity.items())
                          + f". Over {over('variants')} (each method minus the pixel mean, 95 % interval over seeds × "
                          "overlays; contrast retention needs no threshold and no common background): " + ("; ".join(
                              f"{key.replace('|', ', ')}: separated {c['separated']} of {c['runs']}; " + "; ".join(
                                  f"{score} " + ", ".join(diff(c, m, score) for m in ("latent sum", "offset",
                                                                                      "decoded composite"))
                                  for score in ("fidelity", "contrast"))
                              for key, c in variants.items()) or "no runs yet")),
                 "fig4_overlay_sources.png, fig5_overlays_paper_recipe.png, fig5a_overlay_latents.png, "
                 "fig5b_overlay_methods.png, fig5c_variant_study.png, fig5d_latent_plane.png" if s05 in summary else ""))
    study = (_get(summary, "07_section3_study", "configurations") or {})

    def spread(key):
        c = study.get(key)
        if not c:
            return f"{key.replace('|', ' ')}: no runs yet"
        counts = {name: f"{c[name]} of {c['runs']} [{_fmt(c[name + '_low'])}, {_fmt(c[name + '_high'])}]"
                  for name in ("collapsed", "box_reached")}
        data, size, loss = key.split("|")
        return (f"{data} {size} px, loss {loss}: collapsed {counts['collapsed']}, reached the box "
                f"{counts['box_reached']}, largest abs(mean) {_fmt(c['reach_max'], 1)}, crack-like decodes over the "
                f"occupied region (median) {_fmt(c.get('crack_fraction_occupied_median'))}")

    rows.append(("Latent spread over many trainings (§3)", "one training shown; its means span about ±15 × ±10",
                 measured("07_section3_study", "the Section 3 study, 95 % Wilson intervals; box: abs(z1) ≥ 10 or abs(z2) ≥ 7. "
                          + "; ".join(spread(f"{data}|{size}|{loss}") for data in ("elpv-crack-patches", "elpv-cracks")
                                      for loss in ("sum", "keras-io-2020") for size in (64, 128))),
                 "fig7_study_rates.png, fig7_study_reach.png, fig7_study_representatives.png"
                 if "07_section3_study" in summary else ""))
    dims, floor = (studies.get("dims") or {}).get("configurations", {}), _get(studies, "dims", "reconstruction_floor")

    def dimension(d, r):  # floor: a perfect reconstruction's term
        return (f"dim {d}: separated {r.get('separated')} of {r.get('runs')}; " + "; ".join(
            f"{score} {diff(r, 'latent sum', score)}, {diff(r, 'offset', score)}" for score in ("fidelity", "contrast"))
            + "; reconstruction term " + ("above a perfect one {:+.2f} [{:+.2f}, {:+.2f}]" if floor
                                          else "{:.0f} [{:.0f}, {:.0f}]").format(*_reconstruction(r, floor or 0.0)))

    rows.append(("Higher latent dimension (§4)", "realism grows with the latent dimension",
                 measured(s05, f"over {over('dims')}, each method minus the pixel mean [95 % interval]: " + (
                     "; ".join(dimension(d, r) for d, r in sorted(dims.items(), key=lambda i: int(i[0]))) or "no runs yet")),
                 "fig5e_latent_dimension_study.png" if s05 in summary else ""))
    own = _get(summary, s06, "paired_vs_original") or {}
    found = _get(summary, s06, "study") or {}
    entries = (found.get("paired_vs_original") or {}).get("balanced_accuracy") or []
    largest = max((e["n_train"] for e in entries), default=None)

    def pp(value):
        return "—" if value is None else f"{100 * value:+.1f}"

    study_text = (f"the classifier study, {found.get('runs_finished', 0)} of {found.get('runs_planned') or '?'} runs; "
                  f"balanced accuracy minus the original set's at {largest} real cells per class, pp [95 % CI]: "
                  + "; ".join(f"{e['condition']}: {pp(e.get('mean'))} [{pp(e.get('ci_low'))}, {pp(e.get('ci_high'))}] "
                              f"({e.get('verdict', '—')})" for e in entries if e["n_train"] == largest)
                  if entries else "the classifier study: no runs yet")
    accuracy = {k: v.get("accuracy", {}) for k, v in own.items()}
    rows.append(("Classifier gain (§4, proposed)", "several percent (cites +8 %)",
                 measured(s06, study_text + f". This run ({len(_get(summary, s06, 'seeds', []))} seeds), accuracy: "
                          + "; ".join(f"{k}: {pp(a.get('mean_difference'))} [{pp(a.get('ci_low'))}, {pp(a.get('ci_high'))}]"
                                      for k, a in accuracy.items())),
                 "fig6_study_forest.png, fig6_study_curve.png, fig6_accuracy_forest.png, fig6_classifier_conditions.png, "
                 "fig6_training_examples.png" if s06 in summary else ""))
    return rows


def _reconstruction(entry: dict, floor: float) -> list[float]:  # a dims entry's term (mean, low, high) above `floor`
    return [entry.get(f"reconstruction_{end}", float("nan")) - floor for end in ("mean", "low", "high")]


def _verdicts(summary: dict) -> list[str]:
    """Per claim the studies decide, a line with its word (holds, fails, not supported, undecided; interim, pending)."""
    studies, lines = _get(summary, "05_overlay_defects", "studies") or {}, []
    nan, ci = float("nan"), "{:+.2f} [{:+.2f}, {:+.2f}]".format

    def runs(found):
        done, planned = found.get("runs_finished", 0), found.get("runs_planned")
        return f"{done} of {planned or '?'} runs" + ("" if planned and done >= planned else ", interim")

    if variants := (studies.get("variants") or {}).get("configurations"):
        paper = sorted((key.split("|")[0], c) for key, c in variants.items() if key.endswith("|paper"))
        lines.append(f"- **Each source image gets its own latent cluster (§4)** ({runs(studies['variants'])}): " + "; ".join(
            f"**{'holds' if c['separated'] == c['runs'] else 'fails' if not c['separated'] else 'undecided'}** on {name} "
            f"(the paper's recipe separated {c['separated']} of {c['runs']} seeds [{c['separated_low']:.2f}, "
            f"{c['separated_high']:.2f}])" for name, c in paper))
        above = sum(c.get("contrast|latent sum|low", nan) > 0 for c in variants.values())
        key, best = max(variants.items(), key=lambda item: item[1].get("contrast|latent sum|diff", -np.inf))
        best_ci = ci(*(best.get(f"contrast|latent sum|{end}", nan) for end in ("diff", "low", "high")))
        composite = sum(c.get("contrast|decoded composite|low", nan) > 0 for c in variants.values())
        lines.append(f"- **Decoding the sum of latent vectors overlays the defects (§4)** ({runs(studies['variants'])}): "
                     f"**{'holds' if above else 'fails'}**: the latent sum retains more defect contrast than the pixel "
                     f"mean (95 % interval above 0) in {above} of {len(variants)} configurations (best: "
                     f"{key.replace('|', ', ')}, {best_ci}); decoding each source and compositing does in {composite} of "
                     f"{len(variants)}")
    dims, floor = (studies.get("dims") or {}).get("configurations") or {}, _get(studies, "dims", "reconstruction_floor")
    if len(dims) >= 2 and floor:
        (d0, first), (d1, last) = (sorted(dims.items(), key=lambda item: int(item[0]))[i] for i in (0, -1))
        (mean0, low0, high0), (mean1, low1, high1) = (_reconstruction(c, floor) for c in (first, last))
        better, worse = high1 < low0, low1 > high0
        lines.append(f"- **A higher latent dimension makes the images more realistic (§4)** ({runs(studies['dims'])}): "
                     f"**{'holds' if better else 'fails' if worse else 'not supported'}**: reconstruction above a perfect "
                     f"one {ci(mean0, low0, high0)} at dimension {d0}, {ci(mean1, low1, high1)} at {d1}"
                     + ("" if better or worse else " (the intervals overlap)"))
    found = _get(summary, "06_augment_classifier", "study") or {}
    if entries := [e for e in (found.get("paired_vs_original") or {}).get("balanced_accuracy") or [] if "mean" in e]:
        largest, margin = max(e["n_train"] for e in entries), found.get("equivalence_margin", 0.02)
        shown = [e for e in entries if e["n_train"] == largest]
        generated = [e for e in shown if e["condition"] in found.get("vae_conditions", [e["condition"] for e in shown])]
        word = ("holds" if any(e["verdict"] == "better" for e in generated) else "fails"  # fails: no gain >= the margin
                if all(e["ci_high"] < margin for e in generated) else "undecided")
        word = f"pending ({word} so far)" if runs(found).endswith("interim") else word
        lines.append(f"- **A training set extended with VAE-generated images gives a better classifier (§4, proposed)** "
                     f"({runs(found)}): **{word}** (from the conditions with VAE images, "
                     f"{', '.join(e['condition'] for e in generated)}; fails if every interval ends below +{100 * margin:g}): "
                     f"balanced accuracy minus the original's at {largest} real cells per class, points [95 % CI]: " + "; ".join(
                         f"{e['condition']} {100 * e['mean']:+.1f} [{100 * e['ci_low']:+.1f}, {100 * e['ci_high']:+.1f}] "
                         f"({e['verdict']})" for e in shown))
    return lines


def write_report(results_dir: str | Path = "results") -> Path:
    """Write results/REPORT.md: the paper's claims next to what this project measured."""
    results_dir = Path(results_dir)
    path = results_dir / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    lines = ["# Reproduction report", "",
             "Generated by `make reproduce` from `results/summary.json` (the numbers each notebook recorded).",
             "Figures are in `results/figures/`.", ""]
    if verdicts := _verdicts(summary):
        lines += ["## Verdicts from the study tables", "",
                  "Each measured over many trainings (`make study`; the tables are in `results/studies/`).", "",
                  *verdicts, "", "## Every claim", ""]
    lines += ["| claim | the paper | this reproduction | figures |", "|---|---|---|---|"]
    for claim, paper, ours, figures in _claims(summary):
        links = ", ".join(f"[{name}](figures/{name})" for name in figures.split(", ") if name)
        lines.append(f"| {claim} | {paper} | {ours} | {links} |")
    out = results_dir / "REPORT.md"
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


# TensorFlow's C++ log lines (absl/glog format, and what it prints before absl is initialised). They reach stderr
# when tensorflow is imported, whatever TF_CPP_MIN_LOG_LEVEL says, and hold timestamps and thread ids.
LOG_LINE = re.compile(r"""^(?:
    [IWEF]\d{4}\ \d\d:\d\d:\d+(?:\.\d+)?\s+\d+\ [^\s:\]]+:\d+\]\ .*      # I0000 00:00:1795.617 301 cudart_stub.cc:31] ...
  | WARNING:\ All\ log\ messages\ before\ absl::InitializeLog\(\)\ is\ called\ are\ written\ to\ STDERR
  | WARNING:\ Logging\ before\ InitGoogleLogging\(\)\ is\ written\ to\ STDERR
  | This\ TensorFlow\ binary\ is\ optimized\ to\ use\ available\ CPU\ instructions.*
  | To\ enable\ the\ following\ instructions:.*rebuild\ TensorFlow\ with\ the\ appropriate\ compiler\ flags\.
)\s*$""", re.VERBOSE)
_SEGMENT = r"[^\s'\"`<>:;,()\[\]{}|/]"  # a character of one path component
_START = r"(?<![\w.~/-])"  # a path starts here, not in the middle of a word or of another path


def _machine_folders(root) -> list[tuple[str, str]]:
    """(absolute folder, its replacement) for the repository, the temp folders and the home folder, each as given
    and resolved, longest first (a repository inside the temp folder becomes repository-relative)."""
    folders = [(root, ""), (tempfile.gettempdir(), "<tmp>"), ("/tmp", "<tmp>"), ("/var/tmp", "<tmp>"),
               (Path.home(), "~")]
    found = {}
    for folder, replacement in folders:
        for variant in (os.path.abspath(folder), os.path.realpath(folder)):
            if os.path.isabs(variant) and variant.rstrip("/\\"):
                found.setdefault(variant.rstrip("/\\"), replacement)
    return sorted(found.items(), key=lambda item: -len(item[0]))


def scrub_paths(text: str, root) -> str:
    """`text` without absolute paths of this machine: a path into a site-packages or dist-packages folder becomes
    "<site-packages>/...", one into the repository `root` repository-relative ("." for the root itself), one into the
    temp folder (tempfile.gettempdir(), /tmp, /var/tmp) "<tmp>/...", one into the home folder "~/..."."""
    text = re.sub(_START + rf"/(?:{_SEGMENT}+/)*?(?:site|dist)-packages(?!{_SEGMENT})", "<site-packages>", text)
    for folder, replacement in _machine_folders(root):
        escaped = re.escape(folder)
        if not replacement:
            text = re.sub(_START + escaped + rf"/(?={_SEGMENT})", "", text)
        text = re.sub(_START + escaped + rf"(?!{_SEGMENT})", replacement or ".", text)
    return text


def _scrub_value(value, root):
    """`scrub_paths` applied to every string in a JSON value (notebook text is a string or a list of lines)."""
    if isinstance(value, str):
        return scrub_paths(value, root)
    if isinstance(value, list):
        return [_scrub_value(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_value(v, root) for k, v in value.items()}
    return value


def _clean_output(output: dict, root) -> dict | None:
    """One output without log lines (streams) and machine paths (text); None when a stream is left empty."""
    output = dict(output)
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        lines = ("".join(text) if isinstance(text, list) else text).splitlines(keepends=True)
        kept = [line for line in lines if not LOG_LINE.match(line)]
        if len(kept) < len(lines) and not "".join(kept).strip():
            return None
        cleaned = scrub_paths("".join(kept), root)
        output["text"] = cleaned.splitlines(keepends=True) if isinstance(text, list) else cleaned
    if isinstance(output.get("data"), dict):
        output["data"] = {mime: _scrub_value(value, root) if mime.startswith("text/") else value
                          for mime, value in output["data"].items()}
    for key in ("evalue", "traceback"):
        if key in output:
            output[key] = _scrub_value(output[key], root)
    return output


def _clean_papermill(metadata: dict, root) -> bool:
    """Drop papermill's absolute input/output paths and scrub its recorded parameters; True if anything changed."""
    papermill = metadata.get("papermill")
    if not isinstance(papermill, dict):
        return False
    before = json.dumps(papermill, sort_keys=True)
    for key in ("input_path", "output_path"):
        value = papermill.get(key)
        if isinstance(value, str) and (os.path.isabs(value) or re.match(r"[A-Za-z]:[\\/]", value)):
            del papermill[key]
    for key in ("parameters", "environment_variables"):
        if key in papermill:
            papermill[key] = _scrub_value(papermill[key], root)
    return json.dumps(papermill, sort_keys=True) != before


def clean_notebook(path: str | Path, root: str | Path | None = None) -> int:
    """Rewrite the executed notebook at `path` without machine noise; return how many outputs changed or were dropped.

    Stream outputs lose TensorFlow's C++ log lines (`LOG_LINE`), and a stream left empty is dropped. All output text
    (streams, text/* data, error tracebacks) goes through `scrub_paths` with `root`, the repository (default: the
    parent of the notebook's folder). papermill's metadata loses input_path/output_path when they are absolute, and
    its parameters are scrubbed too (those metadata changes rewrite the file but are not counted). Cell sources are
    never touched. The file is rewritten atomically (runs.atomic_write_text), only if something changed, in its own
    layout (indent 1, key order and final newline kept). A file that is not a readable notebook (for example one
    being saved by an editor right now), or that changes while it is cleaned, raises ValueError naming it."""
    path = Path(path)
    root = Path(root) if root is not None else path.resolve().parent.parent
    text = path.read_text(encoding="utf-8")
    try:
        notebook = json.loads(text)
        cells = notebook["cells"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a readable notebook ({type(error).__name__}: {error}); if it is being "
                         "edited, save it and run the cleaner again") from None
    changed = 0
    for cell in cells:
        kept = []
        for output in cell.get("outputs", []):
            cleaned = _clean_output(output, root)
            changed += cleaned != output
            kept += [cleaned] if cleaned is not None else []
        if "outputs" in cell:
            cell["outputs"] = kept
    if _clean_papermill(notebook.get("metadata", {}), root) or changed:
        if path.read_text(encoding="utf-8") != text:  # saved by someone else meanwhile: keep their version
            raise ValueError(f"{path} changed while it was being cleaned; run the cleaner on it again")
        atomic_write_text(path, json.dumps(notebook, indent=1, ensure_ascii=False) + ("\n" if text.endswith("\n") else ""))
    return changed


def main(argv=None) -> int:
    """The command line (see the module docstring); returns the exit status (1 if a notebook was skipped)."""
    parser = argparse.ArgumentParser(prog="python -m vae_overlay.report",
                                     description="Write results/REPORT.md, or clean executed notebooks (--clean).")
    parser.add_argument("paths", nargs="*", help="the results folder (default: results); with --clean, the notebooks")
    parser.add_argument("--clean", action="store_true", help="remove TensorFlow log lines and machine paths from outputs")
    parser.add_argument("--root", help="the repository, for --clean (default: the parent of each notebook's folder)")
    args = parser.parse_args(argv)
    if not args.clean:
        if len(args.paths) > 1:
            parser.error("give one results folder, or --clean NOTEBOOK ...")
        print("wrote", write_report(args.paths[0] if args.paths else "results"))
        return 0
    if not args.paths:
        parser.error("--clean needs the notebooks to clean, e.g. notebooks/*.ipynb")
    status = 0
    for name in args.paths:
        try:
            print(f"{name}: {clean_notebook(name, args.root)} output(s) cleaned")
        except (OSError, ValueError) as error:
            print(f"skipped {name}: {error}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
