"""The cleaner for executed notebooks: committed outputs carry no TensorFlow C++ log noise and no
path of the machine that ran them. `make reproduce` cleans every notebook it executes; by hand:

    python -m vae_overlay.notebook_clean notebooks/*.ipynb    # clean executed notebooks in place
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

from vae_overlay.runs import atomic_write_text

# TensorFlow's C++ log lines (absl/glog format, and what it prints before absl is initialised). They
# reach stderr when tensorflow is imported, whatever TF_CPP_MIN_LOG_LEVEL says, and hold timestamps
# and thread ids. The first alternative is a glog line, for example
# I0000 00:00:1795.617 301 cudart_stub.cc:31] ...
LOG_LINE = re.compile(
    r"""^(?:
    [IWEF]\d{4}\ \d\d:\d\d:\d+(?:\.\d+)?\s+\d+\ [^\s:\]]+:\d+\]\ .*
  | WARNING:\ All\ log\ messages\ before\ absl::InitializeLog\(\)
      \ is\ called\ are\ written\ to\ STDERR
  | WARNING:\ Logging\ before\ InitGoogleLogging\(\)\ is\ written\ to\ STDERR
  | This\ TensorFlow\ binary\ is\ optimized\ to\ use\ available\ CPU\ instructions.*
  | To\ enable\ the\ following\ instructions:.*
      rebuild\ TensorFlow\ with\ the\ appropriate\ compiler\ flags\.
)\s*$""",
    re.VERBOSE,
)
_SEGMENT = r"[^\s'\"`<>:;,()\[\]{}|/]"  # a character of one path component
_START = r"(?<![\w.~/-])"  # a path starts here, not in the middle of a word or of another path


def _machine_folders(root) -> list[tuple[str, str]]:
    """(absolute folder, its replacement) for the repository, the temp folders and the home folder,
    each as given and resolved, longest first (a repository inside the temp folder becomes
    repository-relative)."""
    folders = [
        (root, ""),
        (tempfile.gettempdir(), "<tmp>"),
        ("/tmp", "<tmp>"),
        ("/var/tmp", "<tmp>"),
        (Path.home(), "~"),
    ]
    found = {}
    for folder, replacement in folders:
        for variant in (os.path.abspath(folder), os.path.realpath(folder)):
            if os.path.isabs(variant) and variant.rstrip("/\\"):
                found.setdefault(variant.rstrip("/\\"), replacement)
    return sorted(found.items(), key=lambda item: -len(item[0]))


def scrub_paths(text: str, root) -> str:
    """`text` without absolute paths of this machine: a path into a site-packages or dist-packages
    folder becomes "<site-packages>/...", one into the repository `root` repository-relative ("."
    for the root itself), one into the temp folder (tempfile.gettempdir(), /tmp, /var/tmp)
    "<tmp>/...", one into the home folder "~/..."."""
    text = re.sub(
        _START + rf"/(?:{_SEGMENT}+/)*?(?:site|dist)-packages(?!{_SEGMENT})",
        "<site-packages>",
        text,
    )
    for folder, replacement in _machine_folders(root):
        escaped = re.escape(folder)
        if not replacement:
            text = re.sub(_START + escaped + rf"/(?={_SEGMENT})", "", text)
        text = re.sub(_START + escaped + rf"(?!{_SEGMENT})", replacement or ".", text)
    return text


def _scrub_value(value, root):
    """`scrub_paths` applied to every string in a JSON value (notebook text is a string or a list of
    lines)."""
    if isinstance(value, str):
        return scrub_paths(value, root)
    if isinstance(value, list):
        return [_scrub_value(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_value(v, root) for k, v in value.items()}
    return value


def _clean_output(output: dict, root) -> dict | None:
    """One output without log lines (streams) and machine paths (text); None when a stream is left
    empty."""
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
        output["data"] = {
            mime: _scrub_value(value, root) if mime.startswith("text/") else value
            for mime, value in output["data"].items()
        }
    for key in ("evalue", "traceback"):
        if key in output:
            output[key] = _scrub_value(output[key], root)
    return output


def _clean_papermill(metadata: dict, root) -> bool:
    """Drop papermill's absolute input/output paths and scrub its recorded parameters; True if
    anything changed."""
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
    """Rewrite the executed notebook at `path` without machine noise; return how many outputs
    changed or were dropped.

    Stream outputs lose TensorFlow's C++ log lines (`LOG_LINE`), and a stream left empty is dropped.
    All output text (streams, text/* data, error tracebacks) goes through `scrub_paths` with `root`,
    the repository (default: the parent of the notebook's folder). papermill's metadata loses
    input_path/output_path when they are absolute, and its parameters are scrubbed too (those
    metadata changes rewrite the file but are not counted). Cell sources are never touched. The file
    is rewritten atomically (runs.atomic_write_text), only if something changed, in its own layout
    (indent 1, key order and final newline kept). A file that is not a readable notebook (for
    example one being saved by an editor right now), or that changes while it is cleaned, raises
    ValueError naming it."""
    path = Path(path)
    root = Path(root) if root is not None else path.resolve().parent.parent
    text = path.read_text(encoding="utf-8")
    try:
        notebook = json.loads(text)
        cells = notebook["cells"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path} is not a readable notebook ({type(error).__name__}: {error}); if it is being "
            "edited, save it and run the cleaner again"
        ) from None
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
        # saved by someone else meanwhile: keep their version
        if path.read_text(encoding="utf-8") != text:
            raise ValueError(
                f"{path} changed while it was being cleaned; run the cleaner on it again"
            )
        atomic_write_text(
            path,
            json.dumps(notebook, indent=1, ensure_ascii=False)
            + ("\n" if text.endswith("\n") else ""),
        )
    return changed


def main(argv=None) -> int:
    """The command line (see the module docstring); returns the exit status (1 if a notebook was
    skipped)."""
    parser = argparse.ArgumentParser(
        prog="python -m vae_overlay.notebook_clean",
        description="Remove TensorFlow log lines and machine paths from notebook outputs.",
    )
    parser.add_argument("notebooks", nargs="+", help="the executed notebooks to clean in place")
    parser.add_argument(
        "--root", help="the repository (default: the parent of each notebook's folder)"
    )
    args = parser.parse_args(argv)
    status = 0
    for name in args.notebooks:
        try:
            print(f"{name}: {clean_notebook(name, args.root)} output(s) cleaned")
        except (OSError, ValueError) as error:
            print(f"skipped {name}: {error}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
