"""overlay_study.py: Section 4 as a study kind: the second-opinion scores and one tiny run through
the runner."""

import numpy as np
import pytest
from scipy import ndimage

from vae_overlay import overlay_study, study
from vae_overlay.stats import holm


def disc_image(size=32, centre=(12, 12), radius=4, depth=0.5, level=0.8):
    y, x = np.mgrid[:size, :size]
    mask = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius**2
    image = np.full((size, size), level) + 0.05 * np.sin(x / 2.0) * np.cos(y / 3.0)  # some texture
    return np.where(mask, image - depth, image), mask


def test_contrast_retention_is_one_for_the_source_half_for_half_the_depth_and_zero_when_gone():
    source, mask = disc_image()
    sources, masks = source[None], mask[None]
    assert overlay_study.contrast_retention(source, sources, masks) == pytest.approx(1.0)
    half = np.where(mask, source + 0.25, source)
    assert overlay_study.contrast_retention(half, sources, masks) == pytest.approx(0.5, abs=0.02)
    assert overlay_study.contrast_retention(
        np.full_like(source, 0.8), sources, masks
    ) == pytest.approx(0.0, abs=0.02)
    other, other_mask = disc_image(centre=(22, 22))
    both = np.stack([source, other]), np.stack([mask, other_mask])
    darkest = np.minimum(source, other)
    assert (
        overlay_study.contrast_retention(darkest, *both)
        > 0.9
        > overlay_study.contrast_retention((source + other) / 2, *both)
    )


def test_background_ssim_counts_blur_outside_the_masks():
    source, mask = disc_image()
    assert overlay_study.background_ssim(source, source[None], mask[None]) == pytest.approx(1.0)
    blurred = ndimage.gaussian_filter(source, 2.0)
    assert overlay_study.background_ssim(blurred, source[None], mask[None]) < 0.9
    assert overlay_study.ring(mask).sum() > 0 and not (overlay_study.ring(mask) & mask).any()


def test_ring_by_chessboard_or_city_block_distance():
    dot = np.zeros((7, 7), bool)
    dot[3, 3] = True
    assert overlay_study.ring(dot, 1).sum() == 8 and overlay_study.ring(dot).sum() == 24  # 3x3, 5x5
    assert overlay_study.ring(dot, 1, neighbours=4).sum() == 4  # the contour: 4-adjacent pixels
    assert overlay_study.ring(dot, 2, neighbours=4).sum() == 12  # a diamond, less the dot
    with pytest.raises(ValueError, match="neighbours"):
        overlay_study.ring(dot, 1, neighbours=6)


def test_section4_grids_are_checked_before_anything_runs():
    assert len(study.configurations(study.GRIDS["section4"][1], "section4")) == 42
    with pytest.raises(
        study.StudyError, match="unknown variant \\['beta 0.25'\\]; allowed: \\['paper'"
    ):
        study.configurations({"variant": ["beta 0.25"]}, "section4")
    with pytest.raises(study.StudyError, match="unknown sources"):
        study.configurations({"sources": ["mine"]}, "section4")


@pytest.mark.slow
def test_one_tiny_section4_run_records_every_method_and_score(tmp_path):
    kind, grid = study.GRIDS["tiny4"]
    configs = study.configurations(grid, kind)
    rows = [
        study.run_one(config, str(tmp_path), kind=kind) for config in configs[:1] + configs[-1:]
    ]
    for row in rows:
        assert row["error"] == "" and row["version"] == 1 and len(row["key"]) == 16
        assert 1 <= row["n_clusters"] <= 3 and row["verdict"] in (
            "collapsed",
            "overlapping",
            "separated",
        )
        assert {f"kl_{i}" for i in (1, 2, 3)} <= set(row)
        scored = [key for key in row if key.count("|") == 2]
        # 3 pairs + all three
        assert len(scored) == len(overlay_study.SCORES) * len(overlay_study.METHODS) * 4
        assert all(np.isfinite(row[key]) for key in scored)
        # darkest keeps each defect's depth
        assert row["contrast|pixel darkest|1+2"] > row["contrast|pixel mean|1+2"]
    # on one shared surface compositing shows every defect; on three surfaces the darkest pixel of
    # three backgrounds is darker than their mean everywhere, which the fidelity threshold counts as
    # spurious defect pixels
    assert rows[0]["fidelity|pixel darkest|1+2+3"] > rows[0]["fidelity|pixel mean|1+2+3"]
    assert rows[0]["sources"] == "paper-trio" and rows[1]["sources"] == "distinct"
    assert (tmp_path / "section4" / "distinct-sources" / "pore_12_mask.png").is_file()
    # same key: loaded
    assert study.run_one(configs[0], str(tmp_path), kind=kind)["key"] == rows[0]["key"]


def test_drawn_source_sets_follow_their_seeded_rule_with_masks_that_mark_the_defects():
    sets = study.GRIDS["section4-sets"][1]["sources"]
    arms = [overlay_study.arm(name) for name in sets]
    assert (
        arms.count("same-surface") >= 10
        and arms.count("distinct") >= 10
        and arms.count("elpv") >= 3
    )
    assert set(overlay_study.ARM_TITLES) == set(arms) == set(overlay_study.ARMS)  # each arm titled
    assert len(study.configurations(study.GRIDS["section4-sets"][1], "section4")) == 2 * 2 * len(
        sets
    )
    for name in ("same-surface/3", "distinct/3", "elpv/3"):
        drawn = overlay_study.draw_set(name)
        again = overlay_study.draw_set(name)  # the rule is seeded: the same set every time
        assert [stem for stem, *_ in drawn] == [stem for stem, *_ in again] and len(drawn) == 3
        for (_, image, mask), (_, image_again, _) in zip(drawn, again):
            np.testing.assert_array_equal(image, image_again)
            assert image.shape == mask.shape == (128, 128) and 0.001 < mask.mean() < 0.3
            ring = overlay_study.ring(mask)
            # the mask marks darker pixels than its surroundings
            assert image[mask].mean() < image[ring].mean()

    # the share of pixels that differ visibly between a set's first and last source
    def differing(name):
        drawn = overlay_study.draw_set(name)
        return float((np.abs(drawn[0][1] - drawn[2][1]) > 0.02).mean())

    # one surface against three
    assert differing("same-surface/3") < 0.05 < 0.5 < differing("distinct/3")
    with pytest.raises(ValueError, match="unknown source set 'elpv/99'"):
        overlay_study.source_paths("elpv/99", "unused")


@pytest.mark.slow
def test_tiny_runs_over_drawn_source_sets_write_their_sets_once(tmp_path):
    kind, grid = study.GRIDS["tiny4-sets"]
    rows = [
        study.run_one(config, str(tmp_path), kind=kind)
        for config in study.configurations(grid, kind)
    ]
    assert [row["error"] for row in rows] == ["", "", ""]
    assert all(np.isfinite(row["contrast|latent sum|1+2+3"]) for row in rows)
    written = sorted(p.name for p in (tmp_path / "section4" / "source-sets").iterdir())
    assert written == ["distinct-0", "elpv-0", "same-surface-0"]
    assert len(list((tmp_path / "section4" / "source-sets" / "elpv-0").glob("*_mask.png"))) == 3


def test_latent_plane_covers_the_centres_and_every_sum(crack_images):
    from vae_overlay import model
    from vae_overlay import overlay_experiment as experiment

    sources = crack_images(count=3, size=16, seed=2)
    masks = sources[..., 0] < 0.5
    setup = experiment.Setup(sources, masks, ["a", "b", "c"], "unused", n_samples=20)
    vae = model.build_vae(latent_dim=2, image_size=16, seed=0)
    report = {"z_mean": np.array([[1.0, 0.0], [-0.5, 0.9], [-0.5, -0.9]])}
    plane = experiment.latent_plane(setup, {"report": report, "vae": vae}, tiles_per_axis=9)
    assert plane["sums"].shape == plane["offsets"].shape == (4, 2)
    assert np.allclose(plane["sums"][-1], report["z_mean"].sum(axis=0))
    for points in (plane["centres"], plane["sums"], plane["offsets"], plane["z_bg"][None]):
        assert (points[:, 0] >= plane["z1"][0]).all() and (points[:, 0] <= plane["z1"][-1]).all()
        assert (points[:, 1] >= plane["z2"][0]).all() and (points[:, 1] <= plane["z2"][-1]).all()
    assert (
        plane["tiles"].shape == (len(plane["z1"]), len(plane["z2"]), 16, 16)
        and plane["tiles"].dtype == np.uint8
    )


def fake_row(seed, variant, sources="paper-trio", verdict="separated", shift=0.0):
    """A table row as overlay_study.run writes it, with chosen scores: the pixel mean scores 0.5 on
    every overlay."""
    row = {
        "seed": seed,
        "sources": sources,
        "variant": variant,
        "latent_dim": 2,
        "error": "",
        "verdict": verdict,
        "dead_units": 4,
        "final_reconstruction": 100.0 + seed,
    }
    for score in overlay_study.SCORES:
        for method in overlay_study.METHODS:
            for k, combo in enumerate(("1+2", "1+3", "2+3", "1+2+3")):
                row[f"{score}|{method}|{combo}"] = 0.5 + (
                    shift + 0.01 * k + 0.002 * seed if method == "offset" else 0.0
                )
    return row


def test_summarize_pairs_every_method_with_the_pixel_mean_over_seeds_and_overlays():
    rows = [fake_row(seed, "paper", verdict="collapsed") for seed in range(3)]
    rows += [
        fake_row(seed, "free bits", shift=0.1, verdict="separated" if seed else "overlapping")
        for seed in range(3)
    ]
    rows.append({**fake_row(9, "paper"), "error": "RuntimeError: boom"})  # failed runs are left out
    summary = {s["variant"]: s for s in overlay_study.summarize(rows, by=("sources", "variant"))}
    paper, free = summary["paper"], summary["free bits"]
    assert (paper["runs"], paper["collapsed"], paper["separated"]) == (3, 3, 0)
    assert (free["separated"], free["overlapping"]) == (2, 1) and 0 < free[
        "separated_low"
    ] < 2 / 3 < free["separated_high"]
    assert (
        free["fidelity|pixel mean"] == pytest.approx(0.5) and "fidelity|pixel mean|diff" not in free
    )
    # mean of 12 seed x overlay pairs
    assert free["fidelity|offset|diff"] == pytest.approx(0.1 + 0.015 + 0.002)
    assert (
        free["fidelity|offset|low"]
        < free["fidelity|offset|diff"]
        < free["fidelity|offset|high"]
        < 0.2
    )
    assert (
        free["fidelity|offset|seeds_better"] == 3 and free["fidelity|latent sum|seeds_better"] == 0
    )
    # no spread: a point
    assert free["fidelity|latent sum|diff"] == free["fidelity|latent sum|low"] == 0.0
    assert (
        free["reconstruction_mean"] == 101.0
        and free["reconstruction_low"] < 101.0 < free["reconstruction_high"]
    )
    row = overlay_study.table_rows([free])[0]
    assert row["latent"] == "2 / 1 / 0" and row["offset"] == "+0.12 [{:+.2f}, {:+.2f}]".format(
        free["fidelity|offset|low"], free["fidelity|offset|high"]
    )
    recorded = overlay_study.record([free], keys=("sources", "variant"))["paper-trio|free bits"]
    assert recorded["runs"] == 3 and recorded["contrast|offset|diff"] == pytest.approx(
        0.117, abs=1e-4
    )


def test_load_table_reads_what_a_study_wrote_and_nothing_before(tmp_path):
    empty = study.load_table("tiny4", tmp_path)  # before the study first ran: its grid from GRIDS
    assert (empty["done"], empty["failed"], empty["kind"]) == ([], [], "section4")
    assert empty["planned"] == len(study.configurations(study.GRIDS["tiny4"][1], "section4")) == 4
    assert study.load_table("no-such-study", tmp_path)["planned"] is None
    rows = [
        {"key": "a", "version": 1, "error": "", **fake_row(0, "paper")},
        {"key": "b", "version": 1, "error": "boom", "seed": 1},
    ]
    study.write_table(study.table_path("tiny4", tmp_path), rows)
    loaded = study.load_table("tiny4", tmp_path)
    assert [r["key"] for r in loaded["done"]] == ["a"] and [r["key"] for r in loaded["failed"]] == [
        "b"
    ]
    study.write_table(study.table_path("tiny4", tmp_path), rows + rows[:1])
    with pytest.raises(study.StudyError, match="holds a run twice"):
        study.load_table("tiny4", tmp_path)


def test_reconstruction_floor_is_the_sources_own_entropy_below_any_other_decode():
    sources = overlay_study.load_set("paper-trio", 16)[0].astype(np.float64)
    floor = overlay_study.reconstruction_floor("paper-trio", 16)

    def bce(target, decoded):
        decoded = np.clip(decoded, 1e-7, 1 - 1e-7)
        return float(
            -(target * np.log(decoded) + (1 - target) * np.log(1 - decoded))
            .reshape(len(target), -1)
            .sum(1)
            .mean()
        )

    assert floor == pytest.approx(bce(sources, sources))
    # a collapsed decoder pays more
    assert 0 < floor < bce(sources, np.broadcast_to(sources.mean(0), sources.shape))
    assert floor < 16 * 16 * np.log(2)


def test_holm_adjusts_in_step_down_order_and_keeps_nan():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.2, float("nan"), 0.9])
    assert (
        adjusted[0] == pytest.approx(0.4)
        and np.isnan(adjusted[1])
        and adjusted[2] == pytest.approx(0.9)
    )


def test_arm_verdicts_take_the_source_set_as_the_unit():
    """Seeds and overlays are averaged within a set; intervals and counts are over sets."""
    rows = []
    for k, gain in enumerate((0.10, 0.20, 0.30)):
        for seed in (0, 1):
            row = {
                "variant": "paper",
                "sources": f"distinct/{k}",
                "seed": seed,
                "error": "",
                "verdict": "separated" if k < 2 or seed == 0 else "collapsed",
            }
            for combo in ("1+2", "1+3", "2+3", "1+2+3"):
                row[f"contrast|pixel mean|{combo}"] = 0.5
                # seeds average out
                row[f"contrast|latent sum|{combo}"] = 0.5 + gain + (0.05 if seed else -0.05)
                row[f"contrast|decoded composite|{combo}"] = 0.4
            rows.append(row)
    means = overlay_study.set_means(rows, methods=("pixel mean", "latent sum"))
    assert [m["sources"] for m in means] == ["distinct/0", "distinct/1", "distinct/2"]
    assert [m["latent sum"] for m in means] == pytest.approx([0.6, 0.7, 0.8])
    [verdict] = overlay_study.arm_verdicts(rows, methods=("latent sum", "decoded composite"))
    # set 2: one seed
    assert (verdict["arm"], verdict["sets"], verdict["sets_separated"]) == ("distinct", 3, 2)
    assert verdict["separated_share_mean"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert verdict["latent sum|diff"] == pytest.approx(0.2) and verdict["latent sum|holds"] == 3
    # t(0.975, 2 df) x sd over the three sets / sqrt(3): n is 3 sets, not 24 values
    half = 4.303 * 0.1 / np.sqrt(3)
    assert (verdict["latent sum|low"], verdict["latent sum|high"]) == pytest.approx(
        (0.2 - half, 0.2 + half), abs=1e-3
    )
    assert (
        verdict["decoded composite|diff"] == pytest.approx(-0.1)
        and verdict["decoded composite|holds"] == 0
    )
    assert verdict["latent sum|p_holm"] >= verdict["latent sum|p"]
