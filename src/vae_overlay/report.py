"""The reproduction report: notebooks record their key numbers; `make reproduce` writes REPORT.md."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vae_overlay.data import atomic_write_text


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
