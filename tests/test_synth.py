"""Tests of the procedural cracks, pores and surfaces in vae_overlay.synth."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from vae_overlay import data, synth

SYNTHETIC_DIR = Path(__file__).resolve().parents[1] / "data" / "synthetic"
SEEDS = range(4)


def principal_axes_ratio(mask):
    """Ratio of the long to the short standard deviation of the mask's pixel coordinates."""
    rows, cols = np.nonzero(mask)
    eigenvalues = np.linalg.eigvalsh(np.cov(np.stack([cols, rows]).astype(float)))
    return float(np.sqrt(eigenvalues[1] / eigenvalues[0]))


def surface_and_region(seed, size=128):
    """A float32 surface (as the defect functions return theirs), its part region, and the generator
    after them."""
    rng = np.random.default_rng(seed)
    image, region = synth.make_surface(size, rng)
    return image.astype(np.float32), region, rng


def read_png(path):
    """Pixels of a PNG as a numpy array."""
    with Image.open(path) as image:
        return np.array(image)


@pytest.mark.parametrize("kind", synth.KINDS)
def test_make_sample_is_deterministic_and_seed_dependent(kind):
    image, mask = synth.make_sample(kind, size=64, seed=7)
    again_image, again_mask = synth.make_sample(kind, size=64, seed=7)
    other_image, other_mask = synth.make_sample(kind, size=64, seed=8)
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(mask, again_mask)
    assert np.abs(image - other_image).mean() > 0.01
    assert not np.array_equal(mask, other_mask)


def test_make_surface_is_deterministic_textured_and_has_an_edge():
    image, region = synth.make_surface(128, np.random.default_rng(3))
    again, again_region = synth.make_surface(128, np.random.default_rng(3))
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(region, again_region)
    # float64: defects are added to it
    assert image.shape == region.shape == (128, 128) and image.dtype == np.float64
    assert 0.0 <= image.min() and image.max() <= 1.0 and 0.0 <= region.min() and region.max() <= 1.0
    part, background = image[region >= 0.999], image[region == 0]
    assert 0.4 < (region >= 0.999).mean() < 0.95  # the part fills most of the view, not all of it
    assert abs(np.median(part) - np.median(background)) > 0.2  # a sharp product boundary
    assert 0.02 < part.std() < 0.15  # visible texture, not flat grey


def test_make_sample_starts_from_make_surface():
    rng = np.random.default_rng(11)
    surface, region = synth.make_surface(64, rng)
    expected, expected_mask = synth.add_crack(surface, rng, region=region)
    image, mask = synth.make_sample("crack", size=64, seed=11)
    np.testing.assert_array_equal(image, expected)
    np.testing.assert_array_equal(mask, expected_mask)


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("kind", synth.KINDS)
def test_make_sample_shapes_types_and_ranges(kind, size):
    image, mask = synth.make_sample(kind, size=size, seed=1)
    assert image.shape == mask.shape == (size, size)
    assert image.dtype == np.float32 and mask.dtype == bool
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert mask.sum() >= 8


def test_make_sample_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        synth.make_sample("scratch")


def test_make_dataset_shapes_kinds_and_determinism():
    images, masks, kinds = synth.make_dataset(10, size=32, seed=5, crack_fraction=0.8)
    assert images.shape == (10, 32, 32, 1) and images.dtype == np.float32
    assert masks.shape == (10, 32, 32) and masks.dtype == bool
    assert sorted(kinds) == ["crack"] * 8 + ["pore"] * 2
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert all(masks[i].any() for i in range(10))
    again, again_masks, again_kinds = synth.make_dataset(10, size=32, seed=5, crack_fraction=0.8)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(masks, again_masks)
    assert kinds == again_kinds
    assert not np.array_equal(images, synth.make_dataset(10, size=32, seed=6)[0])
    _, _, pores_only = synth.make_dataset(3, size=32, seed=5, kinds=("pore",))
    assert pores_only == ["pore"] * 3
    with pytest.raises(ValueError, match="kinds"):
        synth.make_dataset(2, size=32, kinds=("crack", "dent"))


@pytest.mark.parametrize("seed", SEEDS)
def test_crack_mask_is_exactly_the_darkened_pixels(seed):
    surface, region, rng = surface_and_region(seed)
    untouched = surface.copy()
    cracked, mask = synth.add_crack(surface, rng, region=region)
    np.testing.assert_array_equal(surface, untouched)  # the input image is not modified
    darkening = surface.astype(np.float64) - cracked
    assert mask.sum() >= 50
    assert np.median(darkening[mask]) > 0.08  # clearly darker than the same surface without it
    assert darkening[~mask].max() < synth.DARKENING_THRESHOLD  # outside: at most a faint halo
    assert darkening.min() >= 0.0  # a crack only darkens
    # Faint parts (soft edges, gaps, fading tips) stay close to the mask and small in total.
    distance_to_mask = ndimage.distance_transform_edt(~mask)
    assert np.all(darkening[distance_to_mask > 8] == 0.0)
    assert darkening[~mask].sum() < 0.25 * darkening[mask].sum()
    ring = (distance_to_mask > 0) & (distance_to_mask <= 3)
    # visibly darker than its surroundings
    assert cracked[mask].mean() < cracked[ring].mean() - 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_pore_mask_is_the_darkened_pixels_and_the_rim_is_brighter(seed):
    surface, region, rng = surface_and_region(seed)
    pored, mask = synth.add_pore(surface, rng, region=region)
    darkening = surface.astype(np.float64) - pored
    assert mask.sum() >= 10
    assert np.median(darkening[mask]) > 0.15
    assert darkening[~mask].max() < synth.DARKENING_THRESHOLD
    distance_to_mask = ndimage.distance_transform_edt(~mask)
    assert np.all(darkening[distance_to_mask > 5] == 0.0)
    assert darkening[distance_to_mask <= 5].min() < -0.02  # the soft bright rim


@pytest.mark.parametrize("seed", SEEDS)
def test_pore_is_compact_and_crack_is_thin_and_elongated(seed):
    surface, region, rng = surface_and_region(seed)
    _, crack = synth.add_crack(surface, rng, region=region)
    _, pore = synth.add_pore(surface, rng, region=region)
    assert ndimage.label(pore)[1] == 1
    pore_ratio = principal_axes_ratio(pore)
    assert pore_ratio < 2.5
    rows, cols = np.nonzero(pore)
    eigenvalues = np.linalg.eigvalsh(np.cov(np.stack([cols, rows]).astype(float)))
    # filled ellipse, same moments
    ellipse_area = np.pi * 4 * np.sqrt(eigenvalues[0] * eigenvalues[1])
    assert 0.8 < pore.sum() / ellipse_area < 1.1
    assert principal_axes_ratio(crack) > 1.8
    assert principal_axes_ratio(crack) > pore_ratio
    inner_distance = ndimage.distance_transform_edt(crack)[crack]
    assert (inner_distance <= 2.0).mean() > 0.8  # mostly within 2 px of its edge: about 1-4 px wide


def test_overlay_trio_shares_the_surface_and_has_distinct_defects():
    trio = synth.make_overlay_trio(size=128)
    assert list(trio) == list(synth.TRIO_NAMES)
    masks = {name: mask for name, (_, mask) in trio.items()}
    any_defect = ndimage.binary_dilation(
        masks["crack_1"] | masks["crack_2"] | masks["pore"], iterations=8
    )
    images = [image for image, _ in trio.values()]
    for image in images[1:]:
        np.testing.assert_array_equal(image[~any_defect], images[0][~any_defect])
    first, second = masks["crack_1"], masks["crack_2"]
    assert (first & second).sum() / (first | second).sum() < 0.1
    centres = [np.array(ndimage.center_of_mass(mask)) for mask in (first, second)]
    assert np.linalg.norm(centres[0] - centres[1]) > 0.2 * 128

    def direction(mask):
        rows, cols = np.nonzero(mask)
        return np.linalg.eigh(np.cov(np.stack([cols, rows]).astype(float)))[1][:, -1]

    angle = np.degrees(np.arccos(abs(direction(first) @ direction(second))))
    assert angle > 30
    pore_image, pore_mask = trio["pore"]
    assert pore_mask.sum() >= 30
    assert pore_image[pore_mask].mean() < pore_image[~pore_mask].mean() - 0.2
    assert not (pore_mask & ndimage.binary_dilation(first | second, iterations=3)).any()


def test_committed_trio_matches_regeneration(tmp_path):
    written = synth.write_overlay_trio(tmp_path)
    assert sorted(path.name for path in written) == sorted(
        [f"{name}.png" for name in synth.TRIO_NAMES]
        + [f"{name}_mask.png" for name in synth.TRIO_NAMES]
    )
    for path in written:
        committed = SYNTHETIC_DIR / path.name
        assert committed.exists(), (
            f"{committed} is missing: run python -m vae_overlay.synth data/synthetic"
        )
        np.testing.assert_array_equal(read_png(committed), read_png(path), err_msg=path.name)
    for name in synth.TRIO_NAMES:
        image, mask = (
            read_png(SYNTHETIC_DIR / f"{name}.png"),
            read_png(SYNTHETIC_DIR / f"{name}_mask.png"),
        )
        assert image.shape == mask.shape == (128, 128) and image.dtype == mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255}
        assert image[mask == 255].mean() < image[mask == 0].mean() - 20


def test_command_line_writes_the_trio(tmp_path):
    out_dir = tmp_path / "trio"
    subprocess.run(
        [sys.executable, "-m", "vae_overlay.synth", str(out_dir), "--size", "64", "--seed", "3"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    expected = synth.make_overlay_trio(size=64, seed=3)
    for name, (image, mask) in expected.items():
        np.testing.assert_array_equal(read_png(out_dir / f"{name}.png"), data.as_uint8(image))
        np.testing.assert_array_equal(
            read_png(out_dir / f"{name}_mask.png"), mask.astype(np.uint8) * 255
        )
