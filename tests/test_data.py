"""The image loader: every format and mode, every bad-input class, the ELPV subset and its crack
patches."""

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vae_overlay import data, datasets, elpv

SIZE = 32


def gradient(width=48, height=40):
    """A horizontal 0..255 ramp, so orientation and scaling are checkable."""
    return np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))


def save(image, path, **kwargs):
    image.save(path, **kwargs)
    return path


# --- formats and modes -------------------------------------------------------------------

FORMATS = [("png", "PNG"), ("jpg", "JPEG"), ("tif", "TIFF"), ("bmp", "BMP"), ("gif", "GIF")]


@pytest.mark.parametrize("ext,fmt", FORMATS)
def test_every_format_loads_as_unit_float(tmp_path, ext, fmt):
    save(Image.fromarray(gradient()), tmp_path / f"ramp.{ext}", format=fmt)
    loaded = data.load_folder(tmp_path, SIZE)
    assert loaded.images.shape == (1, SIZE, SIZE, 1) and loaded.images.dtype == np.float32
    row = loaded.images[0, SIZE // 2, :, 0]
    assert 0 <= loaded.images.min() and loaded.images.max() <= 1
    assert row[0] < 0.25 and row[-1] > 0.75, "dark left, bright right survives the round trip"
    assert loaded.names == [f"ramp.{ext}"] and loaded.skipped == []


def test_modes_give_the_same_gray(tmp_path):
    """1-bit, 8-bit, 16-bit, palette, RGB, RGBA and float images of one picture agree."""
    base = np.zeros((40, 40), np.uint8)
    base[:, 20:] = 255
    gray = Image.fromarray(base)
    variants = {
        "a_1bit.png": gray.convert("1"),
        "b_8bit.png": gray,
        "c_16bit.png": Image.fromarray(base.astype(np.uint16) * 257),
        "d_palette.png": gray.convert("RGB").convert("P"),
        "e_rgb.jpg": gray.convert("RGB"),
        "f_rgba.png": gray.convert("RGBA"),
        "g_float.tif": Image.fromarray(base.astype(np.float32) / 255.0),
        "h_cmyk.jpg": gray.convert("RGB").convert("CMYK"),
    }
    for name, image in variants.items():
        image.save(tmp_path / name)
    loaded = data.load_folder(tmp_path, SIZE)
    assert loaded.names == sorted(variants) and not loaded.skipped
    reference = loaded.images[1]
    for name, image in zip(loaded.names, loaded.images):
        assert np.abs(image - reference).mean() < 0.03, name


def test_sixteen_bit_keeps_its_range(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    image = data.load_image(tmp_path / "deep.png", 64)
    assert image.min() < 0.01 and image.max() > 0.99
    assert len(np.unique(np.round(image[0] * 65535))) > 60, "not quantised to 8 bits first"


def test_transparency_is_composited_over_white(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)  # black, fully transparent
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    assert data.load_image(tmp_path / "clear.png", 8).min() > 0.99


def test_exif_orientation_is_honoured(tmp_path):
    image = Image.fromarray(gradient(48, 48))  # dark left, bright right as stored
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180 on display: bright left
    image.save(tmp_path / "rotated.jpg", exif=exif)
    loaded = data.load_image(tmp_path / "rotated.jpg", SIZE)
    assert loaded[SIZE // 2, 0] > 0.75 and loaded[SIZE // 2, -1] < 0.25


def test_centre_crop_then_resize(tmp_path):
    wide = np.zeros((40, 120), np.uint8)
    wide[:, 40:80] = 255  # the centre square is white; the sides are black and cropped away
    Image.fromarray(wide).save(tmp_path / "wide.png")
    image = data.load_image(tmp_path / "wide.png", SIZE)
    assert image.shape == (SIZE, SIZE) and image.min() > 0.95


def test_tiny_and_huge_aspect_images(tmp_path):
    Image.fromarray(np.full((1, 1), 128, np.uint8)).save(tmp_path / "dot.png")
    Image.fromarray(np.full((2, 900), 50, np.uint8)).save(tmp_path / "line.png")
    loaded = data.load_folder(tmp_path, SIZE)
    assert loaded.images.shape == (2, SIZE, SIZE, 1)
    assert np.allclose(loaded.images[0], 128 / 255, atol=0.01)
    assert np.allclose(loaded.images[1], 50 / 255, atol=0.01)


def test_multi_frame_gif_uses_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (0, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert data.load_image(tmp_path / "anim.gif", 8).max() < 0.05


# --- bad input ------------------------------------------------------------------------------


def png_chunk(kind, body):
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def png_header_only(width, height):
    """A PNG whose header claims width x height, followed by a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def mixed_folder(tmp_path):
    good = Image.fromarray(gradient())
    good.save(tmp_path / "good.png")
    good.save(tmp_path / "good.jpg")
    buffer = io.BytesIO()
    good.save(buffer, format="PNG")
    (tmp_path / "truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "fake.jpg").write_bytes(b"<html>this is not a jpeg</html>")
    (tmp_path / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "nested").mkdir()
    good.save(tmp_path / "nested" / "inner.png")
    good.save(tmp_path / "good_mask.png")
    return tmp_path


def test_mixed_folder_loads_good_and_reports_each_bad_file(tmp_path):
    loaded = data.load_folder(mixed_folder(tmp_path), SIZE)
    assert loaded.names == ["good.jpg", "good.png"]
    reasons = dict(loaded.skipped)
    assert set(reasons) == {"truncated.png", "empty.png", "notes.txt", "fake.jpg", "bomb.png"}
    assert "0 bytes" in reasons["empty.png"]
    assert "truncated" in reasons["truncated.png"] or "corrupt" in reasons["truncated.png"]
    assert "identify" in reasons["notes.txt"] and "identify" in reasons["fake.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    ignored = dict(loaded.ignored)
    assert set(ignored) == {".DS_Store", "nested/", "good_mask.png"}
    report = loaded.report()
    for name in reasons:
        assert name in report


def test_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(path)
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(1))
    with pytest.raises(data.ImageSkipped, match="decompression bomb"):
        data.load_image(path, SIZE, max_pixels=5_000)
    assert decoded == []


def test_missing_folder_names_it(tmp_path):
    with pytest.raises(data.DatasetError, match="does not exist") as error:
        data.load_folder(tmp_path / "nowhere", SIZE)
    assert "nowhere" in str(error.value)


def test_empty_folder_says_what_was_expected(tmp_path):
    with pytest.raises(data.DatasetError, match="No usable image .*expected image files"):
        data.load_folder(tmp_path, SIZE)


def test_folder_of_only_bad_files_lists_them(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.txt").write_text("x")
    with pytest.raises(data.DatasetError) as error:
        data.load_folder(tmp_path, SIZE)
    assert "a.png" in str(error.value) and "b.txt" in str(error.value)


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(data.DatasetError, match="is a file"):
        data.load_folder(tmp_path / "x.png", SIZE)


def test_paths_with_spaces_and_non_ascii(tmp_path):
    folder = tmp_path / "défauts fissures"
    folder.mkdir()
    Image.fromarray(gradient()).save(folder / "трещина 1.png")
    loaded = data.load_folder(folder, SIZE)
    assert loaded.names == ["трещина 1.png"]


# --- dataset files --------------------------------------------------------------------------


def test_dataset_round_trip_and_missing_file_message(tmp_path):
    (tmp_path / "imgs").mkdir()
    loaded = data.load_folder(mixed_folder(tmp_path / "imgs"), SIZE)
    path = data.save_dataset(tmp_path / "run" / "dataset.npz", loaded)
    images, names = data.load_dataset(path)
    assert np.array_equal(images, loaded.images) and names == loaded.names
    assert not list((tmp_path / "run").glob("*.tmp")), "no temp file left behind"
    with pytest.raises(data.DatasetMissing, match=r"other/dataset\.npz not found"):
        data.load_dataset(tmp_path / "other" / "dataset.npz")


# --- ELPV subset ------------------------------------------------------------------------------


def test_elpv_list_is_80_monocrystalline_certain_cracks():
    names = elpv.read_elpv_list()
    assert len(names) == 80 and len(set(names)) == 80
    labels = {name: (prob, kind) for name, prob, kind in elpv.elpv_labels()}
    assert all(labels[name] == (1.0, "mono") for name in names)


@pytest.mark.slow
def test_elpv_selection_is_reproducible_from_the_rule():
    """Recomputing the documented rule gives exactly the committed list (and its scores)."""
    selection = elpv.select_elpv_cracks(80)
    assert [name for name, _ in selection] == elpv.read_elpv_list()


def test_elpv_cracks_load_at_any_size():
    loaded = elpv.load_elpv_cracks(24, names=elpv.read_elpv_list()[:3])
    assert (
        loaded.images.shape == (3, 24, 24, 1)
        and 0 <= loaded.images.min() <= loaded.images.max() <= 1
    )


# --- ELPV crack patches -----------------------------------------------------------------------


def test_elpv_patch_list_holds_the_80_listed_cells_for_each_side():
    for side in elpv.PATCH_SIDES:
        centres = elpv.read_elpv_patches(side)
        assert [name for name, _, _ in centres] == elpv.read_elpv_list(), side
        assert all(
            0 <= row < elpv.ELPV_SIDE and 0 <= col < elpv.ELPV_SIDE for _, row, col in centres
        )


@pytest.mark.slow
def test_elpv_patch_list_is_reproducible_from_the_rule():
    """Recomputing the documented rule (crack_centre of each listed cell, per side) gives exactly
    the committed list."""
    for side in elpv.PATCH_SIDES:
        recomputed = [
            (name, *elpv.crack_centre(elpv.elpv_image(name), side))
            for name in elpv.read_elpv_list()
        ]
        assert recomputed == elpv.read_elpv_patches(side), side


@pytest.mark.parametrize("size", elpv.PATCH_SIDES)
def test_elpv_patches_are_raw_cell_pixels_around_the_crack(size):
    centres = elpv.read_elpv_patches(size)
    loaded = datasets.load_source("elpv-crack-patches", size)
    assert loaded.images.shape == (80, size, size, 1) and loaded.images.dtype == np.float32
    assert 0 <= loaded.images.min() and loaded.images.max() <= 1
    assert len(set(loaded.names)) == 80
    for (cell_name, row, col), name, patch in zip(centres, loaded.names, loaded.images):
        stem, top, left = re.fullmatch(r"(cell\d+)@r(\d+)c(\d+)", name).groups()
        top, left = int(top), int(left)
        assert f"{stem}.png" == cell_name
        cell = elpv.elpv_image(cell_name)
        assert np.array_equal(patch[..., 0], cell[top : top + size, left : left + size]), (
            f"{name}: not the raw pixels"
        )
        # the peak of the box-averaged ridge map (the committed centre) lies inside the patch
        assert top <= row < top + size and left <= col < left + size, name


def test_crack_patches_hold_more_ridge_response_than_their_cell():
    """On the first 10 cells, each 64 px patch's mean ridge response (busbar-blind, border cut)
    beats its cell's."""
    for cell_name, row, col in elpv.read_elpv_patches(64)[:10]:
        cell = elpv.elpv_image(cell_name)
        ridge = np.pad(elpv.ridge_map(cell)[20:-20, 20:-20], 20)
        top, left = elpv.patch_corner((row, col), 64, cell.shape)
        assert (
            ridge[top : top + 64, left : left + 64].mean() > 1.1 * ridge[20:-20, 20:-20].mean()
        ), cell_name


def test_crack_centre_finds_a_drawn_crack_and_ignores_busbars():
    cell = np.full((300, 300), 0.7)
    cell[[75, 150, 225], :] = 0.2  # busbars: horizontal dark lines
    rows = np.arange(200, 260)
    cell[rows, rows - 150] = 0.2  # a diagonal crack from (200, 50) to (259, 109)
    row, col = elpv.crack_centre(cell, 64)
    assert 200 <= row < 260 and 50 <= col < 110
    assert elpv.patch_corner((row, col), 64, cell.shape) == (row - 32, col - 32)
    assert elpv.patch_corner((5, 295), 64, cell.shape) == (0, 236), (
        "clipped to stay inside the cell"
    )


def test_crack_score_reads_the_ridge_map():
    """crack_score and crack_centre share ridge_map: a cell without lines scores no ridge at all."""
    flat = np.full((120, 120), 0.6)
    assert not elpv.ridge_map(flat).any() and elpv.crack_score(flat) == 0.0


@pytest.mark.parametrize("size", [301, 512])
def test_patch_larger_than_the_cell_is_refused(size):
    with pytest.raises(
        data.DatasetError, match=rf"IMAGE_SIZE {size} does not fit inside a 300 x 300 px"
    ):
        elpv.load_elpv_patches(size)


def test_uncommitted_patch_size_uses_the_same_rule():
    loaded = elpv.load_elpv_patches(32)
    assert loaded.images.shape == (80, 32, 32, 1)
    first = elpv.elpv_image(elpv.read_elpv_list()[0])
    top, left = elpv.patch_corner(elpv.crack_centre(first, 32), 32, first.shape)
    assert loaded.names[0] == f"{elpv.read_elpv_list()[0][:-4]}@r{top}c{left}"


def test_wide_patches_are_the_128_px_crops_shrunk_so_size_and_field_of_view_can_be_told_apart():
    wide = datasets.load_source("elpv-crack-patches-wide", 32)
    narrow = elpv.load_elpv_patches(elpv.WIDE_SIDE)
    assert wide.images.shape == (80, 32, 32, 1) and wide.names == narrow.names
    assert np.array_equal(wide.images[3, ..., 0], data.square_resize(narrow.images[3, ..., 0], 32))
    assert not np.array_equal(wide.images, datasets.load_source("elpv-crack-patches", 32).images)


def test_project_root_passes_over_another_projects_pyproject(tmp_path):
    own = data.project_root(Path(data.__file__).parent)
    assert (own / "src" / "vae_overlay" / "data.py").is_file()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'someone-else'\n")
    (tmp_path / "notebooks").mkdir()
    assert (
        data.project_root(tmp_path / "notebooks") == own
    )  # not tmp_path: no src/vae_overlay there
    (tmp_path / "src" / "vae_overlay").mkdir(parents=True)  # a copy of this repository
    assert data.project_root(tmp_path / "notebooks") == tmp_path
