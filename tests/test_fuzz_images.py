"""Property-based fuzzing of the image loader: every input ends in an image or a reported skip.

Random bytes, truncated and bit-flipped copies of valid PNG/JPEG/TIFF/BMP/GIF files, and headers
that declare extreme sizes or odd modes. The contract: `load_image` returns a finite (size, size)
float32 array in [0, 1] or raises `ImageSkipped` with a reason — never another exception — and
each file takes bounded time (hypothesis' deadline per example).
"""

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from vae_overlay import data

SIZE = 16
FUZZ = settings(
    max_examples=150, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def encoded(fmt, mode="L", shape=(23, 31)):
    rng = np.random.default_rng(0)
    pixels = (rng.random(shape) * 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


VALID = {
    "png": encoded("PNG"),
    "png_rgba": encoded("PNG", "RGBA"),
    "jpeg": encoded("JPEG"),
    "jpeg_rgb": encoded("JPEG", "RGB"),
    "tiff": encoded("TIFF"),
    "tiff_rgb": encoded("TIFF", "RGB"),
    "bmp": encoded("BMP"),
    "gif": encoded("GIF", "P"),
}


def outcome(tmp_path, payload, name="fuzz.bin", record=True):
    """Load `payload` from a file; return 'image' or 'skipped', failing on anything else."""
    path = tmp_path / name
    path.write_bytes(payload)
    try:
        image = data.load_image(path, SIZE)
    except data.ImageSkipped as reason:
        assert str(reason), "a skip always carries its reason"
        if record:
            event("skipped: " + str(reason).split(" (")[0][:40])
        return "skipped"
    if record:
        event("loaded")
    assert image.shape == (SIZE, SIZE) and image.dtype == np.float32
    assert np.isfinite(image).all() and 0.0 <= image.min() and image.max() <= 1.0
    return "image"


@FUZZ
@given(payload=st.binary(min_size=0, max_size=4096))
def test_random_bytes(tmp_path, payload):
    outcome(tmp_path, payload)


@FUZZ
@given(kind=st.sampled_from(sorted(VALID)), cut=st.floats(0.0, 1.0))
def test_truncated_copies(tmp_path, kind, cut):
    payload = VALID[kind]
    outcome(tmp_path, payload[: int(len(payload) * cut)])


@FUZZ
@given(
    kind=st.sampled_from(sorted(VALID)),
    flips=st.lists(
        st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=12
    ),
)
def test_bit_flipped_copies(tmp_path, kind, flips):
    payload = bytearray(VALID[kind])
    for where, bit in flips:
        payload[int(where * len(payload))] ^= 1 << bit
    outcome(tmp_path, bytes(payload))


def png_chunk(kind, body):
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


@FUZZ
@given(
    width=st.integers(0, 2**31 - 1),
    height=st.integers(0, 2**31 - 1),
    depth=st.sampled_from([1, 2, 4, 8, 16, 3, 0, 255]),
    colour=st.sampled_from([0, 2, 3, 4, 6, 1, 7]),
    body=st.binary(max_size=256),
)
def test_extreme_png_headers(tmp_path, width, height, depth, colour, body):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    payload = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(body))
        + png_chunk(b"IEND", b"")
    )
    outcome(tmp_path, payload)


@FUZZ
@given(
    width=st.integers(-(2**31), 2**31 - 1),
    height=st.integers(-(2**31), 2**31 - 1),
    bits=st.sampled_from([1, 4, 8, 16, 24, 32, 0, 7]),
    body=st.binary(max_size=256),
)
def test_extreme_bmp_headers(tmp_path, width, height, bits, body):
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 0, len(body), 2835, 2835, 0, 0)
    header = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(body), 0, 0, 14 + len(info))
    outcome(tmp_path, header + info + body)


@FUZZ
@given(
    width=st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1)),
    height=st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1)),
    bits=st.sampled_from([8, 8, 8, 16, 1, 32, 64]),
    samples=st.sampled_from([1, 1, 1, 3, 0, 8]),
    body=st.binary(max_size=256),
)
def test_extreme_tiff_headers(tmp_path, width, height, bits, samples, body):
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, bits),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 8 + 4),
        (277, 3, 1, samples),
        (279, 4, 1, len(body)),
    ]
    ifd = (
        struct.pack("<H", len(entries))
        + b"".join(
            struct.pack("<HHI", tag, kind, count)
            + (struct.pack("<I", value) if kind == 4 else struct.pack("<HH", value, 0))
            for tag, kind, count, value in entries
        )
        + struct.pack("<I", 0)
    )
    outcome(tmp_path, b"II*\x00" + struct.pack("<I", 8) + ifd + body)


def test_every_valid_seed_file_loads(tmp_path):
    """The fuzzers start from files that do load, so a skip above is the damage, not the seed."""
    for kind, payload in VALID.items():
        assert outcome(tmp_path, payload, f"{kind}.img", record=False) == "image", kind


@pytest.mark.parametrize("width,height", [(1, 10**7), (70_000, 70_000), (2**31 - 1, 1)])
def test_huge_declared_sizes_are_refused_fast(tmp_path, width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    payload = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 99))
    )
    assert outcome(tmp_path, payload, record=False) == "skipped"
