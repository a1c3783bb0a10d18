"""notebook_clean: committed notebooks carry no TensorFlow log noise and no machine paths; its
command line."""

import json
import os
import re
import tempfile
from pathlib import Path

import nbformat
import pytest

from vae_overlay import notebook_clean

# --- notebook_clean.clean_notebook: no TensorFlow log noise, no machine paths in committed
# notebooks ---

ROOT = Path(__file__).resolve().parents[1]
TF_NOISE = [  # as TensorFlow 2.21 prints them to stderr on import, before absl is initialised
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    (
        "I0000 00:00:1795933914.617161   30169 cudart_stub.cc:31] Could not find cuda drivers on"
        " your machine, GPU will not be used.\n"
    ),
    (
        "I0000 00:00:1795920771.712831    3111 cpu_feature_guard.cc:227] This TensorFlow binary is"
        " optimized to use available CPU instructions in performance-critical operations.\n"
    ),
    (
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow"
        " with the appropriate compiler flags.\n"
    ),
    (
        "E0000 00:00:1795920777.705791    3111 cuda_platform.cc:52] failed call to cuInit:"
        " INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
    ),
]


def stream(name, lines):
    return {"name": name, "output_type": "stream", "text": lines}


def code_cell(number, outputs, source="print(1)"):
    return {
        "cell_type": "code",
        "execution_count": number,
        "id": f"cell{number}",
        "metadata": {},
        "outputs": outputs,
        "source": [source],
    }


def write_notebook(path, cells, metadata=None, final_newline=True):
    """A small nbformat-4.5 notebook at `path`, laid out as Jupyter writes it (indent 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    notebook = {"cells": cells, "metadata": metadata or {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(
        json.dumps(notebook, indent=1, ensure_ascii=False) + ("\n" if final_newline else "")
    )
    return path


def test_clean_notebook_removes_tensorflow_log_lines_and_the_streams_they_leave_empty(tmp_path):
    warning = "<site-packages>/keras/src/models/functional.py:259: UserWarning: structure\n"
    path = write_notebook(
        tmp_path / "notebooks" / "nb.ipynb",
        [
            code_cell(
                1,
                [
                    stream("stderr", TF_NOISE[:4]),
                    stream("stderr", TF_NOISE[:2]),
                    stream("stdout", ["Python 3.11.7 | TensorFlow 2.21.0\n"]),
                ],
            ),
            code_cell(
                2,
                [
                    stream("stderr", [TF_NOISE[4], warning, "  warnings.warn(msg)\n"]),
                    stream("stderr", "".join(TF_NOISE[:2])),
                ],
            ),  # text as one string, not a list of lines
            code_cell(3, [stream("stdout", ["Epoch 1/100 loss: 3.2\n", "I0 is not a log line\n"])]),
        ],
    )
    assert notebook_clean.clean_notebook(path) == 4
    cells = nbformat.read(path, as_version=4).cells
    nbformat.validate(nbformat.read(path, as_version=4))
    assert [o["name"] for o in cells[0].outputs] == ["stdout"]
    assert cells[0].outputs[0]["text"] == "Python 3.11.7 | TensorFlow 2.21.0\n"
    assert [o["text"] for o in cells[1].outputs] == [warning + "  warnings.warn(msg)\n"]
    assert cells[2].outputs[0]["text"] == "Epoch 1/100 loss: 3.2\nI0 is not a log line\n"
    text = path.read_text()
    # a clean notebook is left as it is
    assert notebook_clean.clean_notebook(path) == 0 and path.read_text() == text


def test_clean_notebook_replaces_machine_paths_in_every_output_kind(tmp_path):
    # inside the temp folder, as a CI checkout may be: repository-relative wins
    repo = tmp_path / "checkout"
    venv_file = repo / ".venv" / "lib" / "python3.11" / "site-packages" / "keras" / "functional.py"
    elsewhere = Path(tempfile.gettempdir()) / "pytest-run" / "artifacts" / "vae.keras"
    home_file = Path.home() / "data" / "cells"
    image = "iVBORw0KGgo/tmp/AAAA"  # base64 may hold "/tmp/" by chance: images are never rewritten
    path = write_notebook(
        repo / "notebooks" / "nb.ipynb",
        [
            code_cell(
                1,
                [
                    stream(
                        "stdout",
                        [f"cached in {repo}/artifacts/run/\n", f"root: {repo}, other: {repo}2/x\n"],
                    ),
                    stream("stderr", [f"{venv_file}:259: UserWarning: x\n"]),
                ],
            ),
            code_cell(
                2,
                [
                    {
                        "output_type": "execute_result",
                        "execution_count": 2,
                        "metadata": {},
                        "data": {"text/plain": [f"PosixPath('{elsewhere}')"], "image/png": image},
                    }
                ],
            ),
            code_cell(
                3,
                [
                    {
                        "output_type": "error",
                        "ename": "FileNotFoundError",
                        "evalue": f"{home_file} is missing",
                        "traceback": [
                            f"File {repo}/src/vae_overlay/data.py:12",
                            "../artifacts/x is relative",
                        ],
                    }
                ],
            ),
        ],
    )
    assert notebook_clean.clean_notebook(path) == 4  # both streams of cell 1, the result, the error
    outputs = [cell["outputs"] for cell in json.loads(path.read_text())["cells"]]
    first, second = outputs[0][0]["text"]
    assert first == "cached in artifacts/run/\n"
    # not the repository
    assert second.startswith("root: ., other: <tmp>/") and second.endswith("/checkout2/x\n")
    assert outputs[0][1]["text"] == ["<site-packages>/keras/functional.py:259: UserWarning: x\n"]
    assert outputs[1][0]["data"] == {
        "text/plain": ["PosixPath('<tmp>/pytest-run/artifacts/vae.keras')"],
        "image/png": image,
    }
    if str(Path.home()) != "/":
        assert outputs[2][0]["evalue"] == "~/data/cells is missing"
    assert outputs[2][0]["traceback"] == [
        "File src/vae_overlay/data.py:12",
        "../artifacts/x is relative",
    ]


def test_clean_notebook_takes_the_repository_root_as_given_and_keeps_the_file_layout(tmp_path):
    repo = tmp_path / "project"
    path = write_notebook(
        tmp_path / "elsewhere" / "nb.ipynb",
        [code_cell(1, [stream("stdout", [f"{repo}/a.txt\n"])])],
        metadata={
            "papermill": {
                "input_path": f"{repo}/notebooks/nb.ipynb",
                "output_path": "nb.ipynb",
                "parameters": {"ARTIFACTS_DIR": f"{repo}/artifacts", "SEED": 1},
            }
        },
        final_newline=False,
    )
    assert notebook_clean.clean_notebook(path, root=repo) == 1
    text = path.read_text()
    notebook = json.loads(text)
    assert notebook["cells"][0]["outputs"][0]["text"] == ["a.txt\n"]
    assert notebook["metadata"]["papermill"] == {
        "output_path": "nb.ipynb",
        "parameters": {"ARTIFACTS_DIR": "artifacts", "SEED": 1},
    }
    assert not text.endswith("\n") and text == json.dumps(notebook, indent=1, ensure_ascii=False)
    metadata_only = write_notebook(
        tmp_path / "nb2.ipynb",
        [code_cell(1, [])],
        metadata={"papermill": {"input_path": str(tmp_path / "in.ipynb")}},
    )
    # metadata is rewritten but not counted
    assert notebook_clean.clean_notebook(metadata_only) == 0
    assert json.loads(metadata_only.read_text())["metadata"]["papermill"] == {}


def test_clean_command_line_cleans_each_notebook_and_skips_one_being_edited(tmp_path, capsys):
    good = write_notebook(
        tmp_path / "notebooks" / "a.ipynb", [code_cell(1, [stream("stderr", TF_NOISE)])]
    )
    broken = tmp_path / "notebooks" / "b.ipynb"
    broken.write_text('{"cells": [')  # half-saved
    assert notebook_clean.main([str(broken), str(good)]) == 1
    captured = capsys.readouterr()
    assert f"skipped {broken}: {broken} is not a readable notebook" in captured.err
    assert f"{good}: 1 output(s) cleaned" in captured.out
    assert json.loads(good.read_text())["cells"][0]["outputs"] == []
    assert broken.read_text() == '{"cells": ['
    with pytest.raises(ValueError, match="b.ipynb is not a readable notebook"):
        notebook_clean.clean_notebook(broken)


LOG_MARKERS = re.compile(
    r"absl::InitializeLog|cudart_stub|cuInit|cpu_feature_guard|rebuild TensorFlow|"
    r"This TensorFlow binary is optimized|^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]",
    re.M,
)
MACHINE_PATHS = [str(ROOT), os.path.realpath(ROOT), tempfile.gettempdir() + "/"] + (
    [str(Path.home()) + "/"] if str(Path.home()) != "/" else []
)
MACHINE_PATH = re.compile(
    r"(?<![\w.~/-])/(?:tmp|var/tmp|var/folders|private|work|home|Users|root)/"
    r"|(?<![\w.~<-])/[^\s'\"]*/(?:site|dist)-packages/"
)


def output_texts(notebook: dict) -> list[str]:
    """The text of every output (streams, text/* data, errors) and the notebook's metadata, as
    strings."""
    texts = [json.dumps(notebook.get("metadata", {}))]
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            for value in [output.get("text"), output.get("evalue"), output.get("traceback")] + [
                v for mime, v in output.get("data", {}).items() if mime.startswith("text/")
            ]:
                if value:
                    texts.append("".join(value) if isinstance(value, list) else str(value))
    return texts


@pytest.mark.parametrize(
    "path", sorted((ROOT / "notebooks").glob("0*.ipynb")), ids=lambda p: p.name
)
def test_committed_notebooks_hold_no_log_noise_and_no_machine_paths(path):
    texts = output_texts(json.loads(path.read_text()))
    noise = [m.group(0) for text in texts for m in LOG_MARKERS.finditer(text)]
    paths = [
        text[max(0, m.start() - 40) : m.end() + 40]
        for text in texts
        for m in MACHINE_PATH.finditer(text)
    ]
    paths += [folder for folder in MACHINE_PATHS for text in texts if folder in text]
    assert (noise, paths) == ([], []), (
        f"run: python -m vae_overlay.notebook_clean notebooks/{path.name}"
    )
