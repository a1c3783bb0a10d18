"""results/summary.json is merged per notebook and stays valid JSON; report.clean_notebook and the command line."""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from vae_overlay import report


def test_record_merges_and_converts(tmp_path):
    report.record("01", {"n": np.int64(80), "shape": (80, 64, 64, 1)}, tmp_path)
    report.record("02", {"loss": np.float32(1.5), "spread": np.array([[-1.0, 2.0]]), "bad": float("nan")}, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["01"] == {"n": 80, "shape": [80, 64, 64, 1]}
    assert summary["02"] == {"loss": 1.5, "spread": [[-1.0, 2.0]], "bad": None}
    report.record("01", {"n": 3}, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["01"] == {"n": 3}


def test_report_lists_every_claim_and_says_what_is_missing(tmp_path):
    report.record("02_train_vae", {"epochs": 100, "final_loss": 2000.0, "latent_min": [-3.0, -2.0],
                                   "latent_max": [3.0, 2.5], "figures": ["loss.png"]}, tmp_path)
    text = report.write_report(tmp_path).read_text()
    assert text.count("\n| ") == 1 + 10  # header + one row per claim
    assert "100 epochs" in text and "(-3.00, -2.00)" in text and "[loss.png](figures/loss.png)" in text
    assert all(f"not measured: run notebook {n}" in text for n in ("05", "06", "07"))


# --- report.clean_notebook: no TensorFlow log noise, no machine paths in committed notebooks ---

ROOT = Path(__file__).resolve().parents[1]
TF_NOISE = [  # as TensorFlow 2.21 prints them to stderr on import, before absl is initialised
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1795933914.617161   30169 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    "not be used.\n",
    "I0000 00:00:1795920771.712831    3111 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.\n",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
    "compiler flags.\n",
    "E0000 00:00:1795920777.705791    3111 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed "
    "call to cuInit: UNKNOWN ERROR (303)\n",
]


def stream(name, lines):
    return {"name": name, "output_type": "stream", "text": lines}


def code_cell(number, outputs, source="print(1)"):
    return {"cell_type": "code", "execution_count": number, "id": f"cell{number}", "metadata": {},
            "outputs": outputs, "source": [source]}


def write_notebook(path, cells, metadata=None, final_newline=True):
    """A small nbformat-4.5 notebook at `path`, laid out as Jupyter writes it (indent 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    notebook = {"cells": cells, "metadata": metadata or {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + ("\n" if final_newline else ""))
    return path


def test_clean_notebook_removes_tensorflow_log_lines_and_the_streams_they_leave_empty(tmp_path):
    warning = "<site-packages>/keras/src/models/functional.py:259: UserWarning: structure\n"
    path = write_notebook(tmp_path / "notebooks" / "nb.ipynb", [
        code_cell(1, [stream("stderr", TF_NOISE[:4]), stream("stderr", TF_NOISE[:2]),
                      stream("stdout", ["Python 3.11.7 | TensorFlow 2.21.0\n"])]),
        code_cell(2, [stream("stderr", [TF_NOISE[4], warning, "  warnings.warn(msg)\n"]),
                      stream("stderr", "".join(TF_NOISE[:2]))]),  # text as one string, not a list of lines
        code_cell(3, [stream("stdout", ["Epoch 1/100 loss: 3.2\n", "I0 is not a log line\n"])]),
    ])
    assert report.clean_notebook(path) == 4
    cells = nbformat.read(path, as_version=4).cells
    nbformat.validate(nbformat.read(path, as_version=4))
    assert [o["name"] for o in cells[0].outputs] == ["stdout"]
    assert cells[0].outputs[0]["text"] == "Python 3.11.7 | TensorFlow 2.21.0\n"
    assert [o["text"] for o in cells[1].outputs] == [warning + "  warnings.warn(msg)\n"]
    assert cells[2].outputs[0]["text"] == "Epoch 1/100 loss: 3.2\nI0 is not a log line\n"
    text = path.read_text()
    assert report.clean_notebook(path) == 0 and path.read_text() == text  # a clean notebook is left as it is


def test_clean_notebook_replaces_machine_paths_in_every_output_kind(tmp_path):
    repo = tmp_path / "checkout"  # inside the temp folder, as a CI checkout may be: repository-relative wins
    venv_file = repo / ".venv" / "lib" / "python3.11" / "site-packages" / "keras" / "functional.py"
    elsewhere = Path(tempfile.gettempdir()) / "pytest-run" / "artifacts" / "vae.keras"
    home_file = Path.home() / "data" / "cells"
    image = "iVBORw0KGgo/tmp/AAAA"  # base64 may hold "/tmp/" by chance: images are never rewritten
    path = write_notebook(repo / "notebooks" / "nb.ipynb", [
        code_cell(1, [stream("stdout", [f"cached in {repo}/artifacts/run/\n", f"root: {repo}, other: {repo}2/x\n"]),
                      stream("stderr", [f"{venv_file}:259: UserWarning: x\n"])]),
        code_cell(2, [{"output_type": "execute_result", "execution_count": 2, "metadata": {},
                       "data": {"text/plain": [f"PosixPath('{elsewhere}')"], "image/png": image}}]),
        code_cell(3, [{"output_type": "error", "ename": "FileNotFoundError", "evalue": f"{home_file} is missing",
                       "traceback": [f"File {repo}/src/vae_overlay/data.py:12", "../artifacts/x is relative"]}]),
    ])
    assert report.clean_notebook(path) == 4  # both streams of cell 1, the result, the error
    outputs = [cell["outputs"] for cell in json.loads(path.read_text())["cells"]]
    first, second = outputs[0][0]["text"]
    assert first == "cached in artifacts/run/\n"
    assert second.startswith("root: ., other: <tmp>/") and second.endswith("/checkout2/x\n")  # not the repository
    assert outputs[0][1]["text"] == ["<site-packages>/keras/functional.py:259: UserWarning: x\n"]
    assert outputs[1][0]["data"] == {"text/plain": ["PosixPath('<tmp>/pytest-run/artifacts/vae.keras')"],
                                     "image/png": image}
    if str(Path.home()) != "/":
        assert outputs[2][0]["evalue"] == "~/data/cells is missing"
    assert outputs[2][0]["traceback"] == ["File src/vae_overlay/data.py:12", "../artifacts/x is relative"]


def test_clean_notebook_takes_the_repository_root_as_given_and_keeps_the_file_layout(tmp_path):
    repo = tmp_path / "project"
    path = write_notebook(tmp_path / "elsewhere" / "nb.ipynb", [code_cell(1, [stream("stdout", [f"{repo}/a.txt\n"])])],
                          metadata={"papermill": {"input_path": f"{repo}/notebooks/nb.ipynb", "output_path": "nb.ipynb",
                                                  "parameters": {"ARTIFACTS_DIR": f"{repo}/artifacts", "SEED": 1}}},
                          final_newline=False)
    assert report.clean_notebook(path, root=repo) == 1
    text = path.read_text()
    notebook = json.loads(text)
    assert notebook["cells"][0]["outputs"][0]["text"] == ["a.txt\n"]
    assert notebook["metadata"]["papermill"] == {"output_path": "nb.ipynb",
                                                 "parameters": {"ARTIFACTS_DIR": "artifacts", "SEED": 1}}
    assert not text.endswith("\n") and text == json.dumps(notebook, indent=1, ensure_ascii=False)
    metadata_only = write_notebook(tmp_path / "nb2.ipynb", [code_cell(1, [])],
                                   metadata={"papermill": {"input_path": str(tmp_path / "in.ipynb")}})
    assert report.clean_notebook(metadata_only) == 0  # metadata is rewritten but not counted
    assert json.loads(metadata_only.read_text())["metadata"]["papermill"] == {}


def test_clean_command_line_cleans_each_notebook_and_skips_one_being_edited(tmp_path, capsys):
    good = write_notebook(tmp_path / "notebooks" / "a.ipynb", [code_cell(1, [stream("stderr", TF_NOISE)])])
    broken = tmp_path / "notebooks" / "b.ipynb"
    broken.write_text('{"cells": [')  # half-saved
    assert report.main(["--clean", str(broken), str(good)]) == 1
    captured = capsys.readouterr()
    assert f"skipped {broken}: {broken} is not a readable notebook" in captured.err
    assert f"{good}: 1 output(s) cleaned" in captured.out
    assert json.loads(good.read_text())["cells"][0]["outputs"] == []
    assert broken.read_text() == '{"cells": ['
    with pytest.raises(ValueError, match="b.ipynb is not a readable notebook"):
        report.clean_notebook(broken)


def test_report_command_line_still_writes_the_report(tmp_path):
    report.record("01_prepare_dataset", {"images": 80}, tmp_path)
    done = subprocess.run([sys.executable, "-m", "vae_overlay.report", str(tmp_path)], capture_output=True, text=True,
                          check=True)
    assert "wrote" in done.stdout and "80 images" in (tmp_path / "REPORT.md").read_text()
    with pytest.raises(SystemExit):
        report.main(["--clean"])  # no notebook named


LOG_MARKERS = re.compile(r"absl::InitializeLog|cudart_stub|cuInit|cpu_feature_guard|rebuild TensorFlow|"
                         r"This TensorFlow binary is optimized|^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]", re.M)
MACHINE_PATHS = [str(ROOT), os.path.realpath(ROOT), tempfile.gettempdir() + "/"] + (
    [str(Path.home()) + "/"] if str(Path.home()) != "/" else [])
MACHINE_PATH = re.compile(r"(?<![\w.~/-])/(?:tmp|var/tmp|var/folders|private|work|home|Users|root)/"
                          r"|(?<![\w.~<-])/[^\s'\"]*/(?:site|dist)-packages/")


def output_texts(notebook: dict) -> list[str]:
    """The text of every output (streams, text/* data, errors) and the notebook's metadata, as strings."""
    texts = [json.dumps(notebook.get("metadata", {}))]
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            for value in [output.get("text"), output.get("evalue"), output.get("traceback")] + [
                    v for mime, v in output.get("data", {}).items() if mime.startswith("text/")]:
                if value:
                    texts.append("".join(value) if isinstance(value, list) else str(value))
    return texts


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("0*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_hold_no_log_noise_and_no_machine_paths(path):
    texts = output_texts(json.loads(path.read_text()))
    noise = [m.group(0) for text in texts for m in LOG_MARKERS.finditer(text)]
    paths = [text[max(0, m.start() - 40):m.end() + 40] for text in texts for m in MACHINE_PATH.finditer(text)]
    paths += [folder for folder in MACHINE_PATHS for text in texts if folder in text]
    assert (noise, paths) == ([], []), f"run: python -m vae_overlay.report --clean notebooks/{path.name}"


def test_the_classifier_row_states_the_study_at_its_largest_training_set(tmp_path):
    entry = {"condition": "(7) + copy-paste cracks", "mean": 0.012, "ci_low": -0.004, "ci_high": 0.028,
             "verdict": "equivalent within ±2 pp"}
    report.record("06_augment_classifier", {"seeds": [42, 43], "paired_vs_original": {}, "study": {
        "runs_finished": 59, "runs_planned": 60, "paired_vs_original": {"balanced_accuracy": [
            {**entry, "n_train": 20, "mean": 0.5}, {**entry, "n_train": 80}]}}}, tmp_path)
    text = report.write_report(tmp_path).read_text()
    assert ("the classifier study, 59 of 60 runs; balanced accuracy minus the original set's at 80 real cells per "
            "class, pp [95 % CI]: (7) + copy-paste cracks: +1.2 [-0.4, +2.8] (equivalent within ±2 pp). This run (2 seeds)"
            in text) and "+50.0" not in text


def test_the_latent_dimension_row_states_each_dimension_with_its_intervals(tmp_path):
    entry = {"runs": 3, "separated": 1, "reconstruction_mean": 3200.4, "reconstruction_low": 3100.2,
             "reconstruction_high": 3300.9}
    entry.update({f"{score}|{method}|{end}": value for score in ("fidelity", "contrast")
                  for method in ("latent sum", "offset") for end, value in (("diff", -0.1), ("low", -0.2), ("high", 0.0))})
    report.record("05_overlay_defects", {"studies": {"dims": {"study": "section4-dims", "runs_finished": 6, "runs_planned": 12,
                                                             "configurations": {"16": entry, "2": entry},
                                                             "reconstruction_floor": 3200.0}}}, tmp_path)
    text = report.write_report(tmp_path).read_text()
    assert ("over 6 of 12 runs of study 'section4-dims', each method minus the pixel mean [95 % interval]: dim 2: "
            "separated 1 of 3; fidelity latent sum -0.10 [-0.20, 0.00], offset -0.10 [-0.20, 0.00]; contrast latent "
            "sum -0.10 [-0.20, 0.00], offset -0.10 [-0.20, 0.00]; reconstruction term above a perfect one +0.40 [-99.80, "
            "+100.90]; dim 16:") in text


def test_the_verdicts_name_each_claim_with_its_word_and_say_interim_until_a_study_is_complete(tmp_path):
    def config(separated, runs, sum_low, composite_low):
        return {"separated": separated, "runs": runs, "separated_low": 0.1, "separated_high": 0.9,
                "contrast|latent sum|diff": sum_low + 0.05, "contrast|latent sum|low": sum_low,
                "contrast|latent sum|high": sum_low + 0.1, "contrast|decoded composite|low": composite_low}

    def dim(mean, half):
        return {"reconstruction_mean": 100 + mean, "reconstruction_low": 100 + mean - half,
                "reconstruction_high": 100 + mean + half}

    variants = {"distinct|paper": config(3, 3, -0.02, 0.3), "trio|paper": config(0, 3, -0.1, -0.1),
                "trio|leaky": config(1, 3, -0.05, 0.2)}
    studies = {"variants": {"runs_finished": 40, "runs_planned": 42, "configurations": variants},
               "dims": {"runs_finished": 12, "runs_planned": 12, "reconstruction_floor": 100.0,
                        "configurations": {"2": dim(0.7, 0.01), "16": dim(0.3, 0.05), "4": dim(0.5, 0.1)}}}
    entry = {"n_train": 80, "mean": 0.004, "ci_low": -0.01, "ci_high": 0.018}
    record = {"runs_finished": 60, "runs_planned": 60, "vae_conditions": ["(3)", "(4)"], "paired_vs_original": {
        "balanced_accuracy": [{**entry, "condition": "(4)", "verdict": "equivalent within ±2 pp"},
                              {**entry, "condition": "(3)", "verdict": "worse, but within ±2 pp"},
                              {**entry, "condition": "(7)", "verdict": "better"},  # no VAE: not the paper's claim
                              {**entry, "n_train": 20, "condition": "(3)", "verdict": "better"}]}}
    report.record("05_overlay_defects", {"studies": studies}, tmp_path)
    report.record("06_augment_classifier", {"study": record}, tmp_path)
    text = report.write_report(tmp_path).read_text()
    assert ("own latent cluster (§4)** (40 of 42 runs, interim): **holds** on distinct (the paper's recipe separated 3 "
            "of 3 seeds [0.10, 0.90]); **fails** on trio") in text
    assert ("**fails**: the latent sum retains more defect contrast than the pixel mean (95 % interval above 0) in 0 of "
            "3 configurations (best: distinct, paper, +0.03 [-0.02, +0.08]); decoding each source and compositing does "
            "in 2 of 3") in text
    assert ("(12 of 12 runs): **holds**: reconstruction above a perfect one +0.70 [+0.69, +0.71] at dimension 2, "
            "+0.30 [+0.25, +0.35] at 16") in text
    assert ("(60 of 60 runs): **fails** (from the conditions with VAE images, (4), (3); fails if every interval ends "
            "below +2): balanced accuracy minus" in text
            and "(3) +0.4 [-1.0, +1.8] (worse, but" in text and "(7) +0.4 [-1.0, +1.8] (better)" in text)
    assert text.index("## Verdicts from the study tables") < text.index("| claim | the paper |")
    record["runs_finished"] = 30
    report.record("06_augment_classifier", {"study": record}, tmp_path)
    assert "(30 of 60 runs, interim): **pending (fails so far)**" in report.write_report(tmp_path).read_text()
    # an undecided condition whose interval still ends below +2 rules out the claimed gain; one reaching +2 does not
    record["runs_finished"], record["paired_vs_original"]["balanced_accuracy"][0]["verdict"] = 60, "undecided"
    report.record("06_augment_classifier", {"study": record}, tmp_path)
    assert "(60 of 60 runs): **fails**" in report.write_report(tmp_path).read_text()
    record["paired_vs_original"]["balanced_accuracy"][0]["ci_high"] = 0.02
    report.record("06_augment_classifier", {"study": record}, tmp_path)
    assert "(60 of 60 runs): **undecided**" in report.write_report(tmp_path).read_text()
