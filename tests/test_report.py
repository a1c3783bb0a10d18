"""The record (results/summary.json, with provenance), REPORT.md and the README's generated
findings: every number rendered from the record, the committed ones current, a custom run's report
its own."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vae_overlay import findings, overlay_study, report, stats

ROOT = Path(__file__).resolve().parents[1]


def test_record_merges_and_converts(tmp_path):
    report.record("01", {"n": np.int64(80), "shape": (80, 64, 64, 1)}, tmp_path)
    report.record(
        "02",
        {"loss": np.float32(1.5), "spread": np.array([[-1.0, 2.0]]), "bad": float("nan")},
        tmp_path,
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {k: v for k, v in summary["01"].items() if k != "provenance"} == {
        "n": 80,
        "shape": [80, 64, 64, 1],
    }
    assert (
        summary["02"]["bad"] is None
        and summary["02"]["spread"] == [[-1.0, 2.0]]
        and summary["02"]["loss"] == 1.5
    )
    report.record("01", {"n": 3}, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["01"]["n"] == 3

    provenance = summary["02"]["provenance"]
    assert set(provenance) == {"commit", "date", "cpu"} and re.fullmatch(
        r"\d{4}-\d\d-\d\d", provenance["date"]
    )
    assert f"at commit `{provenance['commit']}` on {provenance['date']}" in report.header(summary)


def test_shares_become_words_by_their_interval():
    assert [findings.share_word(h, 10) for h in (10, 9, 5, 2, 0)] == [
        "holds",
        "holds",
        "undecided",
        "undecided",
        "fails",
    ]
    assert (
        findings.interim("fails", False) == "fails, interim"
        and findings.interim("fails", True) == "fails"
    )


@pytest.fixture(scope="module")
def committed():
    """The committed REPORT.md and README.md, and what the committed record renders now."""
    results = ROOT / "results"
    return {
        "report": (results / "REPORT.md").read_text(),
        "readme": (ROOT / "README.md").read_text(),
        "rendered": "\n".join(report.report_lines(results)) + "\n",
        "found": findings.all_findings(results),
    }


def test_the_committed_report_and_readme_are_what_the_record_renders(committed):
    assert committed["report"] == committed["rendered"], (
        "results/REPORT.md differs from the record: run python -m vae_overlay.report (make"
        " reproduce does)"
    )
    assert report.stale(ROOT / "results") == [], (
        "README.md's findings differ from the record: python -m vae_overlay.report"
    )


def test_the_report_opens_with_the_verdicts_and_shows_each_claims_figure(committed):
    text, found = committed["report"], committed["found"]
    assert re.findall(r"^## .*", text, re.M)[0] == "## Verdicts"
    assert {f.verdict.split(",")[0] for f in found} <= set(stats.VERDICTS) and len(found) >= 6
    for f in found:
        section = text[text.index(f"## {f.claim}") :]
        assert f"![{f.figure}](figures/{f.figure})" in section.split("\n## ")[0]
        assert (ROOT / "results" / "figures" / f.figure).is_file()
    cells = [
        c.strip()
        for line in text.splitlines()
        if line.startswith("|")
        for c in re.split(r"(?<!\\)\|", line)[1:-1]
    ]
    assert cells and max(map(len, cells)) <= 300, max(cells, key=len)
    readme = committed["readme"]
    assert readme.index(report.README_BEGIN) < readme.index("## Three commands")
    assert "| claim | the paper | verdict |" in readme.split(report.README_BEGIN)[1]


def test_each_arms_cluster_verdict_shows_every_trained_variant_beside_the_papers(committed):
    """The word comes from the paper's recipe; the best variant's share sits beside it, counted
    from the same table (sets whose every seed separated)."""
    rows, _, _ = findings.section4_rows(ROOT / "results")
    variants = {r["variant"] for r in rows}
    arms = [f for f in committed["found"] if f.claim.startswith("Each source gets its own")]
    assert len(arms) == len({overlay_study.arm(r["sources"]) for r in rows}) >= 3
    for f in arms:
        detail = f.detail.set_index("variant")
        assert set(detail.index) == variants and len(variants) >= 2
        assert f.number.startswith(detail.loc["paper", "every seed separated"])
        section = committed["report"][committed["report"].index(f"## {f.claim}") :]
        assert (
            detail.loc["standardised + leaky", "every seed separated"] in section.split("\n## ")[0]
        )


def test_a_hand_edit_or_a_changed_record_is_caught(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "studies", results / "studies")
    shutil.copy(ROOT / "results" / "summary.json", results)
    (tmp_path / "README.md").write_text(
        f"# x\n\n{report.README_BEGIN}\n{report.README_END}\n\n## Three commands\n"
    )
    report.write_report(results)
    dead = json.loads((results / "summary.json").read_text())["02_train_vae"]["dead_dense_units"]
    assert report.stale(results) == [] and f"{dead} of 16" in (tmp_path / "README.md").read_text()
    readme = tmp_path / "README.md"
    # a number typed over
    readme.write_text(readme.read_text().replace(f"{dead} of 16", f"{dead + 1} of 16"))
    assert report.stale(results) == [str(readme)]
    summary = json.loads((results / "summary.json").read_text())
    summary["02_train_vae"]["dead_dense_units"] = 17  # the record changed, the texts did not
    (results / "summary.json").write_text(json.dumps(summary))
    assert report.stale(results) == [str(results / "REPORT.md"), str(readme)]
    assert (
        subprocess.run(
            [sys.executable, "-m", "vae_overlay.report", "--check", str(results)]
        ).returncode
        == 1
    )
    report.write_report(results)
    assert "17 of 16" in readme.read_text() and report.main(["--check", str(results)]) == 0


def test_a_run_of_ones_own_reports_only_itself_and_links_the_committed_studies(tmp_path):
    run = tmp_path / "runs" / "my-cracks"
    report.record(
        "01_prepare_dataset", {"images": 11, "dataset": "my-cracks-6b0498", "image_size": 64}, run
    )
    report.record(
        "02_train_vae",
        {
            "train_seconds": 12.0,
            "final_loss": 2000.0,
            "final_reconstruction": 1990.0,
            "final_kl": 10.0,
            "latent_min": [-3.0, -2.0],
            "latent_max": [3.0, 2.5],
            "dead_dense_units": 2,
        },
        run,
    )
    text = report.write_report(run).read_text()
    assert "## Verdicts" not in text and "## This run (one draw)" in text
    assert "11 images of my-cracks at 64 px" in text and "z₁ ∈ [-3.0, 3.0]" in text
    link = re.search(r"\[their report\]\(([^)]+)\)", text).group(1)
    assert (run / link).resolve() == (ROOT / "results" / "REPORT.md").resolve()
    assert report.readme_for(run) is None and "summary.json" not in text.split("## This run")[1]
