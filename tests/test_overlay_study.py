"""overlay_study.py: Section 4 as a study kind: the second-opinion scores and one tiny run through the runner."""
import numpy as np
import pytest
from scipy import ndimage

from vae_overlay import overlay_study, study


def disc_image(size=32, centre=(12, 12), radius=4, depth=0.5, level=0.8):
    y, x = np.mgrid[:size, :size]
    mask = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius ** 2
    image = np.full((size, size), level) + 0.05 * np.sin(x / 2.0) * np.cos(y / 3.0)  # some texture
    return np.where(mask, image - depth, image), mask


def test_contrast_retention_is_one_for_the_source_half_for_half_the_depth_and_zero_when_gone():
    source, mask = disc_image()
    sources, masks = source[None], mask[None]
    assert overlay_study.contrast_retention(source, sources, masks) == pytest.approx(1.0)
    half = np.where(mask, source + 0.25, source)
    assert overlay_study.contrast_retention(half, sources, masks) == pytest.approx(0.5, abs=0.02)
    assert overlay_study.contrast_retention(np.full_like(source, 0.8), sources, masks) == pytest.approx(0.0, abs=0.02)
    other, other_mask = disc_image(centre=(22, 22))
    both = np.stack([source, other]), np.stack([mask, other_mask])
    darkest = np.minimum(source, other)
    assert overlay_study.contrast_retention(darkest, *both) > 0.9 > overlay_study.contrast_retention((source + other) / 2, *both)


def test_background_ssim_counts_blur_outside_the_masks():
    source, mask = disc_image()
    assert overlay_study.background_ssim(source, source[None], mask[None]) == pytest.approx(1.0)
    blurred = ndimage.gaussian_filter(source, 2.0)
    assert overlay_study.background_ssim(blurred, source[None], mask[None]) < 0.9
    assert overlay_study.ring(mask).sum() > 0 and not (overlay_study.ring(mask) & mask).any()


def test_section4_grids_are_checked_before_anything_runs():
    assert len(study.configurations(study.GRIDS["section4"][1], "section4")) == 42
    with pytest.raises(study.StudyError, match="unknown variant \\['beta 0.25'\\]; allowed: \\['paper'"):
        study.configurations({"variant": ["beta 0.25"]}, "section4")
    with pytest.raises(study.StudyError, match="unknown sources"):
        study.configurations({"sources": ["mine"]}, "section4")


@pytest.mark.slow
def test_one_tiny_section4_run_records_every_method_and_score(tmp_path):
    kind, grid = study.GRIDS["tiny4"]
    configs = study.configurations(grid, kind)
    rows = [study.run_one(config, str(tmp_path), kind=kind) for config in configs[:1] + configs[-1:]]
    for row in rows:
        assert row["error"] == "" and row["version"] == 1 and len(row["key"]) == 16
        assert 1 <= row["n_clusters"] <= 3 and row["verdict"] in ("collapsed", "overlapping", "separated")
        assert {f"kl_{i}" for i in (1, 2, 3)} <= set(row)
        scored = [key for key in row if key.count("|") == 2]
        assert len(scored) == len(overlay_study.SCORES) * len(overlay_study.METHODS) * 4  # 3 pairs + all three
        assert all(np.isfinite(row[key]) for key in scored)
        assert row["contrast|pixel darkest|1+2"] > row["contrast|pixel mean|1+2"]  # darkest keeps each defect's depth
    # on one shared surface compositing shows every defect; on three surfaces the darkest pixel of three backgrounds
    # is darker than their mean everywhere, which the fidelity threshold counts as spurious defect pixels
    assert rows[0]["fidelity|pixel darkest|1+2+3"] > rows[0]["fidelity|pixel mean|1+2+3"]
    assert rows[0]["sources"] == "paper-trio" and rows[1]["sources"] == "distinct"
    assert (tmp_path / "section4" / "distinct-sources" / "pore_12_mask.png").is_file()
    assert study.run_one(configs[0], str(tmp_path), kind=kind)["key"] == rows[0]["key"]  # same key: loaded


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
    assert plane["tiles"].shape == (len(plane["z1"]), len(plane["z2"]), 16, 16) and plane["tiles"].dtype == np.uint8
