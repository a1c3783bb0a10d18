"""Notebook prose describes; it does not carry measurements typed by hand (they go stale when a
study grows or a notebook runs on another CPU). Measurements are printed by code cells or displayed
as generated Markdown."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# a reading of an incomplete table
MEASUREMENT = re.compile(
    r"\[[−+-]?\d+\.\d+, [−+-]?\d+\.\d+\]"  # an interval: [0.24, 0.76]
    r"|(?<![\w.])[~≈]?\d+(?:\.\d+)?\s?(?:ms|s|min)\b(?! per)"  # a time: 152 s, ~30 s, 51 ms
    r"|\b\d+ of \d+ (?:runs|seeds|sets|configurations)\b"  # a count over a study: 5 of 10 runs
    r"|\bso far\b"
)


@pytest.mark.parametrize(
    "path", sorted((ROOT / "notebooks").glob("0*.ipynb")), ids=lambda p: p.name
)
def test_markdown_cells_carry_no_hand_typed_measurements(path):
    cells = json.loads(path.read_text())["cells"]
    found = [
        f"cell {i}: …{text[max(0, m.start() - 50) : m.end() + 20]}…".replace("\n", " ")
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "markdown"
        for text in ["".join(cell["source"])]
        for m in MEASUREMENT.finditer(text)
    ]
    assert not found, (
        "print these from a code cell or display generated Markdown instead:\n" + "\n".join(found)
    )


# a notebook a reader takes in at one sitting; a longer one is split (05 / 05b)
MOST_CELLS, MOST_WORDS = (30, 1650)


@pytest.mark.parametrize(
    "path", sorted((ROOT / "notebooks").glob("0*.ipynb")), ids=lambda p: p.name
)
def test_notebooks_stay_readable_in_one_sitting_and_open_with_their_title(path):
    cells = json.loads(path.read_text())["cells"]
    words = sum(
        len("".join(cell["source"]).split()) for cell in cells if cell["cell_type"] == "markdown"
    )
    assert len(cells) <= MOST_CELLS and words <= MOST_WORDS, (len(cells), words)
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith(
        f"# {path.name[:2]}"
    )
