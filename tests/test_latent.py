"""Tests for vae_overlay.latent: the paper's grid, batched decoding, sweep summaries, paths and
smoothness."""

import numpy as np
import pytest

from vae_overlay import latent


@pytest.fixture(scope="module")
def decoder(make_decoder):
    return make_decoder()


def test_paper_grid_has_exact_counts_and_endpoints():
    # paper defaults: [-15,15] x [-10,10], step 0.1
    z1_values, z2_values, points = latent.latent_grid()
    assert (len(z1_values), len(z2_values), len(points)) == (301, 201, 60501)
    assert (z1_values[0], z1_values[-1], z2_values[0], z2_values[-1]) == (-15.0, 15.0, -10.0, 10.0)
    assert points.shape == (60501, 2) and points.dtype == np.float32
    # points[i * n2 + j] = (z1[i], z2[j])
    assert np.allclose(points[5 * 201 + 7], [z1_values[5], z2_values[7]])
    assert np.allclose(np.diff(z1_values), 0.1) and np.allclose(np.diff(z2_values), 0.1)
    assert np.isclose(z1_values[150], 0.0, atol=1e-12)


def test_grid_counts_survive_float_accumulation():
    # np.arange(-15, 15 + 0.1, 0.1) style code is fragile; counting by rounding is not
    assert len(latent.axis_values((0.0, 0.3), 0.1)) == 4
    assert len(latent.axis_values((-1.0, 1.0), 0.05)) == 41
    with pytest.raises(ValueError):
        latent.axis_values((0.0, 1.0), 0.3)  # not a whole number of steps


def test_batched_decode_matches_one_call_decode(decoder):
    rng = np.random.default_rng(0)
    z = rng.normal(scale=3.0, size=(103, 2)).astype(np.float32)
    reference = np.round(np.clip(decoder.predict(z, verbose=0), 0, 1) * 255)
    batched = latent.decode_batched(decoder, z, batch_size=16)
    assert batched.dtype == np.uint8 and batched.shape == (103, 16, 16, 1)
    assert np.abs(batched.astype(int) - reference.astype(int)).max() <= 1
    # the answer does not depend on the batch size
    assert (
        np.abs(latent.decode_batched(decoder, z, batch_size=1000).astype(int) - batched).max() <= 1
    )
    assert reference.std() > 0  # the decoder is not trivially constant


def test_batched_decode_in_float32_gives_the_decoders_values(decoder, tmp_path):
    z = np.random.default_rng(1).normal(scale=3.0, size=(23, 2))
    values = latent.decode_batched(decoder, z, batch_size=5, dtype=np.float32)
    assert values.dtype == np.float32 and values.shape == (23, 16, 16, 1)
    called = decoder(z.astype(np.float32), training=False).numpy()
    np.testing.assert_allclose(values, called, atol=1e-6)
    rounded = np.round(np.clip(values, 0, 1) * 255).astype(int)
    assert np.abs(rounded - latent.decode_batched(decoder, z, batch_size=5)).max() <= 1
    one = latent.decode_batched(decoder, z[3], dtype=np.float32)  # one point (d,) is one image
    assert one.shape == (1, 16, 16, 1) and np.array_equal(one[0], values[3])
    path = tmp_path / "float.npy"
    mapped = latent.decode_batched(decoder, z, batch_size=5, out=path, dtype=np.float32)
    assert mapped.dtype == np.float32 and np.array_equal(np.load(path), values)
    with pytest.raises(ValueError, match="dtype"):
        latent.decode_batched(decoder, z, dtype=np.float64)


def test_decode_into_memmap_and_preallocated(decoder, tmp_path):
    z = np.linspace(-5, 5, 40, dtype=np.float32).reshape(20, 2)
    expected = latent.decode_batched(decoder, z, batch_size=7)
    path = tmp_path / "sweep" / "images.npy"
    seen = []
    mapped = latent.decode_batched(
        decoder, z, batch_size=7, out=path, progress=lambda done, total: seen.append(done)
    )
    assert isinstance(mapped, np.memmap)
    assert seen == [7, 14, 20]
    assert np.array_equal(np.load(path, mmap_mode="r"), expected)
    buffer = np.zeros((20, 16, 16, 1), np.uint8)
    assert latent.decode_batched(decoder, z, batch_size=7, out=buffer) is buffer
    assert np.array_equal(buffer, expected)
    with pytest.raises(ValueError):
        latent.decode_batched(decoder, z, out=np.zeros((20, 16, 16, 1), np.float32))
    with pytest.raises(ValueError):
        latent.decode_batched(decoder, np.zeros((3, 4), np.float32))


class RecordingBar:
    """Stands in for tqdm: records what decode_batched tells its progress bar."""

    made = []

    def __init__(self, total, **options):
        self.total, self.options, self.done, self.closed = total, options, 0, False
        RecordingBar.made.append(self)

    def update(self, count):
        self.done += count

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.closed = True


def test_progress_true_drives_one_tqdm_bar(decoder, monkeypatch):
    z = np.zeros((10, 2), np.float32)
    expected = latent.decode_batched(decoder, z, batch_size=5)
    # real tqdm
    assert np.array_equal(latent.decode_batched(decoder, z, batch_size=5, progress=True), expected)
    RecordingBar.made = []
    monkeypatch.setattr(latent, "tqdm", RecordingBar)
    latent.decode_batched(decoder, z, batch_size=4, progress=True)
    [bar] = RecordingBar.made
    assert (bar.total, bar.done, bar.closed, bar.options["disable"]) == (10, 10, True, False)
    seen = []
    latent.decode_batched(
        decoder, z, batch_size=4, progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(4, 10), (8, 10), (10, 10)]
    assert RecordingBar.made[-1].options["disable"]  # a callback, not a bar


def test_compiled_decoder_matches_model_call(decoder):
    z = np.array([[0.5, -1.5], [3.0, 2.0]], np.float32)
    decode = latent.compiled_decoder(decoder)
    assert np.allclose(decode(z), decoder(z, training=False).numpy(), atol=1e-6)
    assert decode(z[0]).shape == (1, 16, 16, 1)  # a single point is accepted too


def test_interpolate_endpoints_and_even_spacing():
    z_a, z_b = np.array([1.0, -2.0, 0.3]), np.array([-4.0, 6.0, 0.7])
    path = latent.interpolate(z_a, z_b, 12)
    assert path.shape == (12, 3)
    assert np.array_equal(path[0], z_a.astype(np.float32)) and np.array_equal(
        path[-1], z_b.astype(np.float32)
    )
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert np.allclose(steps, np.linalg.norm(z_b - z_a) / 11, rtol=1e-5)
    with pytest.raises(ValueError):
        latent.interpolate(z_a, z_b, 1)


def test_smoothness_of_known_sequences():
    # pixel values 0, 1, 2, 3: every step changes each pixel by 1 -> perfectly even
    even = np.arange(4, dtype=np.uint8)[:, None, None] * np.ones((1, 5, 5), np.uint8)
    assert latent.smoothness(even) == pytest.approx(1.0)
    # steps of 1, 1, 4 (uint8 input must not wrap around): mean 2, largest 4 -> 2.0
    jumpy = np.array([0, 1, 2, 6], np.uint8)[:, None, None] * np.ones((1, 3, 3), np.uint8)
    assert np.allclose(latent.step_changes(jumpy), [1, 1, 4])
    assert latent.smoothness(jumpy) == pytest.approx(2.0)
    # decreasing values count the same as increasing ones (absolute change)
    assert latent.smoothness(jumpy[::-1]) == pytest.approx(2.0)
    # pixel-space linear blending is even by construction
    rng = np.random.default_rng(0)
    a, b = rng.random((8, 8)), rng.random((8, 8))
    blend = np.stack([(1 - t) * a + t * b for t in np.linspace(0, 1, 12)])
    assert latent.smoothness(blend) == pytest.approx(1.0, abs=1e-9)
    assert latent.smoothness(np.zeros((3, 2, 2))) == 1.0


def test_sweep_summary_of_a_known_sweep():
    # a 3 x 2 grid of 2 x 2 images: image (i, j) has every pixel = 30 * i + 10 * j (grey levels)
    values = np.array([30 * i + 10 * j for i in range(3) for j in range(2)], np.uint8)
    sweep = values[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    summary = latent.sweep_summary(sweep, (3, 2), chunk_size=4)  # chunks of 4 and 2 images
    assert summary["pixel_mean"].shape == summary["pixel_std"].shape == (2, 2)
    assert np.allclose(summary["pixel_mean"], values.mean() / 255)
    assert np.allclose(summary["pixel_std"], values.std() / 255)
    # one step in z1 changes every pixel by 30, one step in z2 by 10
    assert summary["change"].shape == (2, 1)
    assert np.allclose(summary["change"], np.hypot(30, 10) / 255)
    with pytest.raises(ValueError, match="3 x 3 grid"):
        latent.sweep_summary(sweep, (3, 3))


def test_nearest_in_sweep_finds_the_closest_image():
    rng = np.random.default_rng(0)
    sweep = rng.integers(0, 256, size=(50, 4, 4, 1), dtype=np.uint8)
    picks = np.array([7, 42, 0])
    images = sweep[picks].astype(np.float32) / 255 + rng.normal(0, 0.01, (3, 4, 4, 1)).astype(
        np.float32
    )
    index, rms = latent.nearest_in_sweep(sweep, images, chunk_size=16)
    assert list(index) == list(picks)
    reference = np.sqrt(
        ((sweep[picks].astype(np.float64) / 255 - images) ** 2).reshape(3, -1).mean(axis=1)
    )
    assert np.allclose(rms, reference, atol=1e-4)
    with pytest.raises(ValueError, match="pixels"):
        latent.nearest_in_sweep(sweep, np.zeros((1, 3, 3, 1)))


def test_compiled_decoder_is_traced_once_per_decoder(decoder):
    decode = latent.compiled_decoder(decoder, uint8=True)
    assert latent.compiled_decoder(decoder, uint8=True) is decode
    # batches of 2, 2 and 1
    latent.decode_batched(decoder, np.zeros((5, 2), np.float32), batch_size=2)
    decode(np.zeros((7, 2), np.float32))
    assert decode.graph_function.experimental_get_tracing_count() == 1


def test_decoded_grid_puts_high_z2_on_top():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vae_overlay import plots

    tiles = np.zeros((2, 3, 2, 2), np.uint8)  # tiles[i, j] is decoded at (z1[i], z2[j])
    for i in range(2):
        for j in range(3):
            tiles[i, j] = 10 * i + j
    fig, ax = plt.subplots()
    plots.decoded_grid(ax, tiles, np.array([-1.0, 1.0]), np.array([-2.0, 0.0, 2.0]))
    canvas = np.asarray(ax.images[0].get_array())
    assert canvas.shape == (6, 4)
    assert canvas[0, 0] == 2 and canvas[0, 3] == 12  # top row: highest z2, z1 growing to the right
    assert canvas[5, 0] == 0 and canvas[5, 3] == 10
    # half a spacing beyond the end points
    assert ax.images[0].get_extent() == [-2.0, 2.0, -3.0, 3.0]
    plt.close(fig)


def test_grid_figures_show_each_tile_stretched_and_say_so_or_as_decoded():
    rng = np.random.default_rng(0)
    # a narrow range, as the decodes have
    tiles = (0.4 + 0.1 * rng.random((3, 2, 8, 8))).astype(np.float32)
    shown, how = latent.shown_tiles(tiles, True)
    assert shown.shape == tiles.shape and how == "each tile stretched to its own 1–99 % range"
    for tile, original in zip(shown.reshape(-1, 8, 8), tiles.reshape(-1, 8, 8)):
        assert (
            np.array_equal(tile, latent.contrast_stretch(original))
            and tile.max() - tile.min() > 0.9
        )
    same, how = latent.shown_tiles(tiles, False)
    assert same is tiles or np.array_equal(same, tiles)
    assert how == "as decoded"
