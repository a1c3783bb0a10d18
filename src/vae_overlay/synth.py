"""Procedural inspection images: metal surface, product boundary, cracks and pores, with defect
masks.

Every function takes its randomness from a `numpy.random.Generator` (or an integer seed), so the
same seed gives the same image (with the same numpy/scipy). Images are computed in float64 and
returned as float32 in [0, 1] (only `make_surface` returns its float64 working image); a defect mask
is True where that defect darkens the image by at least `DARKENING_THRESHOLD`. Sizes are defined at
128 px and scale with `size`.
"""

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

from vae_overlay.data import as_uint8

KINDS = ("crack", "pore")
DARKENING_THRESHOLD = 0.04  # about 10 grey levels: a defect pixel is one the defect visibly darkens
CAVITY_LEVEL = 0.03  # intensity at the bottom of an open crack or pore
# picked by eye among 2021-2028: two well-separated cracks of different direction on ground metal
TRIO_SEED = 2024
TRIO_NAMES = ("crack_1", "crack_2", "pore")


def _unit_noise(shape, sigma, rng):
    """White noise low-pass filtered by a Gaussian of `sigma` px, scaled to unit standard
    deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-12)


def _noise_1d(n, sigma, rng):
    """A smooth 1-D random signal of length n with unit standard deviation."""
    return _unit_noise((n,), sigma, rng)


def _grid(size):
    """Pixel-centre coordinates (x, y) as float64 arrays of shape (size, size)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return x, y


def _ground_texture(size, rng, scale):
    """Straight grinding/milling marks: noise stretched along one direction, plus feed marks."""
    canvas = int(np.ceil(size * 1.5)) + 2
    fine = _unit_noise((canvas, canvas), (0.6 * scale, 14 * scale), rng)
    coarse = _unit_noise((canvas, canvas), (2.5 * scale, 30 * scale), rng)
    rows = np.arange(canvas, dtype=np.float64)[:, None]
    period = rng.uniform(2.5, 5.0) * scale
    feed = np.sin(2 * np.pi * rows / period + rng.uniform(0, 2 * np.pi))
    feed = feed * (0.5 + 0.5 * np.abs(_unit_noise((canvas, canvas), (4 * scale, 20 * scale), rng)))
    field = fine + 0.7 * coarse + rng.uniform(0.2, 0.6) * feed
    field = ndimage.rotate(field, rng.uniform(0, 180), reshape=False, order=1, mode="reflect")
    start = (canvas - size) // 2
    return field[start : start + size, start : start + size]


def _turned_texture(size, rng, scale):
    """Turning/facing marks: concentric arcs around a centre outside the image."""
    x, y = _grid(size)
    direction = rng.uniform(0, 2 * np.pi)
    distance = rng.uniform(1.2, 3.0) * size
    centre_x = size / 2 + distance * np.cos(direction)
    centre_y = size / 2 + distance * np.sin(direction)
    radius = np.hypot(x - centre_x, y - centre_y)
    step = 0.25  # px per sample of the radial profile
    r_min, r_max = radius.min() - 2, radius.max() + 2
    r = np.arange(r_min, r_max, step)
    period = rng.uniform(2.0, 4.5) * scale
    profile = (
        _noise_1d(r.size, 0.7 * scale / step, rng)
        + 0.6 * _noise_1d(r.size, 3.0 * scale / step, rng)
        + rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * r / period)
    )
    rings = np.interp(radius, r, profile)
    strength = np.clip(1 + 0.5 * _unit_noise((size, size), 10 * scale, rng), 0.2, None)
    return rings * strength


def _cast_texture(size, rng, scale):
    """Cast/shot-blasted grain: isotropic noise at several scales."""
    shape = (size, size)
    return (
        0.8 * _unit_noise(shape, 0.7 * scale, rng)
        + 0.7 * _unit_noise(shape, 2.0 * scale, rng)
        + 0.6 * _unit_noise(shape, 6.0 * scale, rng)
        + 0.4 * _unit_noise(shape, 16.0 * scale, rng)
    )


def make_surface(size, rng):
    """A metal part's edge: (image float64 (size, size) in [0, 1], soft part region: 1 on the part,
    0 off it).

    The image stays float64 so that defects added to it (`add_crack`, `add_pore`, with
    `region=region`) are computed without an intermediate rounding; `make_sample` and
    `make_overlay_trio` start from it.
    """
    scale = size / 128
    x, y = _grid(size)
    texture_maker = (_ground_texture, _turned_texture, _cast_texture)[rng.integers(3)]
    texture = texture_maker(size, rng, scale)
    texture = texture / (texture.std() + 1e-12) + 0.35 * _unit_noise((size, size), 0.6 * scale, rng)
    part = rng.uniform(0.5, 0.68) + rng.uniform(0.035, 0.06) * texture

    # Product boundary: a slightly curved, slightly rough edge; the part covers most of the view.
    angle = rng.uniform(0, 2 * np.pi)
    normal_x, normal_y = np.cos(angle), np.sin(angle)
    centre = (size - 1) / 2
    across = (x - centre) * normal_x + (y - centre) * normal_y
    along = -(x - centre) * normal_y + (y - centre) * normal_x
    offset = rng.uniform(0.18, 0.42) * size
    curvature = rng.uniform(-0.5, 0.5) / size  # sagitta up to about size / 8
    roughness = (
        0.4
        * scale
        * np.interp(along, np.arange(-size, size, 0.5), _noise_1d(4 * size, 3 * scale, rng))
    )
    inside = offset - across - curvature * along**2 + roughness  # px, > 0 on the part
    part_weight = np.clip(inside + 0.5, 0.0, 1.0)

    if rng.uniform() < 0.75:  # dark background (shadow, fixture) ...
        background_level = rng.uniform(0.08, 0.22)
    else:  # ... or a bright backlit table
        background_level = rng.uniform(0.82, 0.92)
    background = background_level + 0.02 * _unit_noise((size, size), 4 * scale, rng)
    bevel = rng.uniform(0.08, 0.22) * np.exp(-(((inside - 1.5 * scale) / (0.9 * scale)) ** 2))
    shadow = rng.uniform(0.0, 0.06) * np.exp(-(((inside + 1.5 * scale) / (1.5 * scale)) ** 2))
    image = background * (1 - part_weight) + part * part_weight + bevel - shadow

    # Uneven illumination: a gentle ramp and vignette.
    ramp_angle = rng.uniform(0, 2 * np.pi)
    ramp = ((x - centre) * np.cos(ramp_angle) + (y - centre) * np.sin(ramp_angle)) / size
    vignette = ((x - centre) ** 2 + (y - centre) ** 2) / size**2
    image = image * (1 + rng.uniform(0.05, 0.18) * ramp - rng.uniform(0.0, 0.25) * vignette)

    image = ndimage.gaussian_filter(image, 0.45 * scale)  # optics
    image = image + rng.uniform(0.006, 0.014) * rng.standard_normal((size, size))  # sensor
    region = np.clip(inside / (1.5 * scale), 0.0, 1.0)
    return np.clip(image, 0.0, 1.0), region


def _darken(image, depth):
    """Pull `image` towards the cavity level by `depth` in [0, 1]; return image and defect mask."""
    image = np.asarray(image, dtype=np.float64)
    # cut the blur's invisible tails
    depth = np.where(depth >= 0.002, np.clip(depth, 0.0, 1.0), 0.0)
    darkened = image - np.clip(image - CAVITY_LEVEL, 0.0, None) * depth
    return darkened, (image - darkened) >= DARKENING_THRESHOLD


def _walk(start, heading, length, step, rng, scale):
    """Points and headings of a zigzag random walk with momentum (a crack path)."""
    n = max(int(length / step), 3)
    turn_rate = rng.normal(0.0, 0.0015, n)  # momentum: the turning rate is an AR(1) process
    for i in range(1, n):
        turn_rate[i] += 0.97 * turn_rate[i - 1]
    drift = heading + np.cumsum(turn_rate)
    # Intergranular zigzag: the direction jumps around the drift every few pixels.
    zigzag = np.empty(n)
    i = 0
    while i < n:
        run = max(int(rng.uniform(1.5, 6.0) * scale / step), 1)
        zigzag[i : i + run] = rng.normal(0.0, 0.38)
        i += run
    direction = drift + zigzag
    steps = step * np.stack([np.cos(direction), np.sin(direction)], axis=1)
    points = np.asarray(start, dtype=np.float64) + np.concatenate(
        [[[0.0, 0.0]], np.cumsum(steps, 0)[:-1]]
    )
    return points, direction


def _crack_strokes(centre, heading, length, width, rng, scale, step=0.35):
    """List of (points, radii, strengths) strokes of one branching crack."""
    strokes = []

    def arm(start, direction, arm_length, start_width, level):
        points, headings = _walk(start, direction, arm_length, step, rng, scale)
        n = len(points)
        t = np.linspace(0.0, 1.0, n)
        radii = (
            0.5
            * start_width
            * (1 - t) ** 0.8
            * np.clip(1 + 0.3 * _noise_1d(n, 2 / step, rng), 0.5, 1.4)
        )
        radii = np.maximum(radii, 0.25)
        strength = np.clip(0.8 + 0.2 * _noise_1d(n, 3 / step, rng), 0.45, 1.0)
        strength *= np.clip((1 - t) / 0.08, 0.0, 1.0)  # the tip fades out
        for _ in range(rng.poisson(1.2 * arm_length / (40 * scale))):  # broken line: gaps
            gap_start = rng.integers(int(0.1 * n), n)
            gap_length = int(rng.uniform(1.0, 3.5) * scale / step)
            strength[gap_start : gap_start + gap_length] *= rng.uniform(0.0, 0.15)
        strokes.append((points, radii, strength))
        if level >= 2:
            return
        rate = 1.6 if level == 0 else 0.7
        for _ in range(rng.poisson(rate * arm_length / (40 * scale))):
            fork = rng.integers(int(0.1 * n), int(0.8 * n))
            side = rng.choice([-1.0, 1.0])
            remaining = arm_length * (1 - t[fork])
            arm(
                points[fork],
                headings[fork] + side * rng.uniform(0.35, 1.0),
                rng.uniform(0.3, 0.8) * remaining,
                2 * radii[fork] * rng.uniform(0.6, 0.9),
                level + 1,
            )

    arm(centre, heading, length * rng.uniform(0.4, 0.6), width, 0)
    arm(centre, heading + np.pi, length * rng.uniform(0.4, 0.6), width, 0)
    return strokes


def _paint(size, strokes):
    """Rasterise strokes into an anti-aliased coverage map in [0, 1] (maximum over discs)."""
    points = np.concatenate([stroke[0] for stroke in strokes])
    radii = np.concatenate([stroke[1] for stroke in strokes])[:, None, None]
    strengths = np.concatenate([stroke[2] for stroke in strokes])[:, None, None]
    half = int(np.ceil(radii.max() + 1.5))
    offsets = np.arange(-half, half + 1)
    shape = (len(points), offsets.size, offsets.size)
    cols = np.broadcast_to(
        np.floor(points[:, 0]).astype(np.int64)[:, None, None] + offsets[None, None, :], shape
    )
    rows = np.broadcast_to(
        np.floor(points[:, 1]).astype(np.int64)[:, None, None] + offsets[None, :, None], shape
    )
    distance = np.hypot(cols - points[:, 0, None, None], rows - points[:, 1, None, None])
    values = np.clip(radii + 0.5 - distance, 0.0, 1.0) * strengths
    keep = (values > 0) & (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    coverage = np.zeros(size * size)
    np.maximum.at(coverage, rows[keep] * size + cols[keep], values[keep])
    return coverage.reshape(size, size)


def _depth_in_region(region):
    """Distance (px) of every pixel to the nearest pixel outside `region` or outside the image."""
    inside = np.asarray(region) >= 0.999
    return ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]


def _random_centre(region, rng, clearance, size=None):
    """A random pixel (x, y) at least `clearance` px inside `region` (or as deep inside as there
    is)."""
    depth = _depth_in_region(np.ones((size, size)) if region is None else region)
    rows, cols = np.nonzero(depth >= min(clearance, 0.8 * depth.max()))
    pick = rng.integers(len(rows))
    return float(cols[pick]), float(rows[pick])


def add_crack(
    image, rng, centre=None, angle=None, length=None, width=None, contrast=None, region=None
):
    """Add a branching broken-line crack; return (image float32, mask bool of the darkened
    pixels)."""
    image = np.asarray(image, dtype=np.float64)
    size = image.shape[0]
    scale = size / 128
    if centre is None:
        centre = _random_centre(region, rng, 0.15 * size, size)
    angle = rng.uniform(0, 2 * np.pi) if angle is None else angle
    length = rng.uniform(0.45, 0.9) * size if length is None else length
    width = rng.uniform(1.2, 3.0) * scale if width is None else width  # px at the widest point
    contrast = rng.uniform(0.55, 0.85) if contrast is None else contrast
    strokes = _crack_strokes(centre, angle, length, width, rng, scale)
    depth = ndimage.gaussian_filter(_paint(size, strokes), max(0.45 * scale, 0.4)) * contrast
    if region is not None:
        depth = depth * region
    darkened, mask = _darken(image, depth)
    return darkened.astype(np.float32), mask


def add_pore(image, rng, centre=None, radius=None, contrast=None, region=None):
    """Add a round or oval pore with a soft bright rim; return (image float32, mask bool)."""
    image = np.asarray(image, dtype=np.float64)
    size = image.shape[0]
    scale = size / 128
    radius = max(rng.uniform(2.0, 5.0) * scale, 1.5) if radius is None else radius
    if centre is None:
        centre = _random_centre(region, rng, max(radius + 3 * scale, 0.08 * size), size)
    contrast = rng.uniform(0.6, 0.85) if contrast is None else contrast
    minor = max(radius * rng.uniform(0.6, 1.0), min(radius, 1.2))
    tilt = rng.uniform(0, np.pi)
    x, y = _grid(size)
    u = (x - centre[0]) * np.cos(tilt) + (y - centre[1]) * np.sin(tilt)
    v = -(x - centre[0]) * np.sin(tilt) + (y - centre[1]) * np.cos(tilt)
    rho = np.hypot(u / radius, v / minor)
    edge_distance = (rho - 1) * np.sqrt(radius * minor)  # px, < 0 inside
    inside = np.clip(0.5 - edge_distance, 0.0, 1.0)
    # The cavity is lit from one side: its floor is darker away from the light.
    light = rng.uniform(0, 2 * np.pi)
    side = ((x - centre[0]) * np.cos(light) + (y - centre[1]) * np.sin(light)) / radius
    shading = 0.85 + 0.15 * np.clip(side, -1.0, 1.0)
    depth = ndimage.gaussian_filter(inside * shading, max(0.5 * scale, 0.4)) * contrast
    rim_width = max(0.8 * scale, 0.6)
    rim = rng.uniform(0.05, 0.12) * np.exp(-(((edge_distance - 1.2 * rim_width) / rim_width) ** 2))
    rim = rim * (1 - 0.5 * np.clip(side, -1.0, 1.0))  # the rim catches light on the far side
    rim = np.where(rim >= 0.002, rim, 0.0)
    if region is not None:
        depth, rim = depth * region, rim * region
    darkened, _ = _darken(image, depth)
    darkened = np.clip(darkened + rim * (edge_distance > -0.5), 0.0, 1.0)
    mask = (image - darkened) >= DARKENING_THRESHOLD
    return darkened.astype(np.float32), mask


def make_sample(kind, size=128, seed=0):
    """One image (float32 (size, size) in [0, 1]) with a crack or pores, and its defect mask."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    image, region = make_surface(size, rng)
    if kind == "crack":
        image, mask = add_crack(image, rng, region=region)
    else:
        image, mask = add_pore(image, rng, region=region)
        for _ in range(rng.integers(0, 3)):  # sometimes a few small satellite pores
            image, extra = add_pore(
                image, rng, radius=max(rng.uniform(1.2, 2.2) * size / 128, 1.2), region=region
            )
            mask |= extra
    return image.astype(np.float32), mask


def make_dataset(n, size=128, seed=0, kinds=KINDS, crack_fraction=0.8):
    """n samples: images (n, size, size, 1) float32, masks (n, size, size) bool, kinds list[str]."""
    kinds = tuple(kinds)
    if not kinds or any(kind not in KINDS for kind in kinds):
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds!r}")
    rng = np.random.default_rng(seed)
    if set(kinds) == set(KINDS):
        n_cracks = int(round(n * crack_fraction))
        sample_kinds = ["crack"] * n_cracks + ["pore"] * (n - n_cracks)
        rng.shuffle(sample_kinds)
    else:
        sample_kinds = [kinds[0]] * n
    seeds = rng.integers(0, 2**63 - 1, size=n)
    images = np.empty((n, size, size, 1), np.float32)
    masks = np.empty((n, size, size), bool)
    for i, (kind, sample_seed) in enumerate(zip(sample_kinds, seeds)):
        images[i, :, :, 0], masks[i] = make_sample(kind, size, int(sample_seed))
    return images, masks, list(sample_kinds)


def make_overlay_trio(size=128, seed=TRIO_SEED):
    """Two cracks and a pore on one shared surface: {name: (image float32, mask bool)}."""
    scale = size / 128
    rng = np.random.default_rng(seed)
    surface, region = make_surface(size, rng)
    x, y = _grid(size)
    # Both crack centres lie deep inside the part and far apart from each other.
    depth_in_part = _depth_in_region(region)
    deep = depth_in_part >= min(0.2 * size, 0.6 * depth_in_part.max())
    candidates = np.argwhere(deep)
    first_row, first_col = candidates[rng.integers(len(candidates))]
    first = (float(first_col), float(first_row))
    apart = np.hypot(x - first[0], y - first[1]) >= 0.3 * size
    candidates = np.argwhere(deep & apart) if (deep & apart).any() else np.argwhere(apart)
    second_row, second_col = candidates[rng.integers(len(candidates))]
    second = (float(second_col), float(second_row))
    first_angle = rng.uniform(0, np.pi)
    second_angle = first_angle + rng.choice([-1.0, 1.0]) * rng.uniform(np.pi / 3, np.pi / 2)
    crack_1 = add_crack(
        surface,
        rng,
        centre=first,
        angle=first_angle,
        length=0.6 * size,
        width=3.0 * scale,
        contrast=0.75,
        region=region,
    )
    crack_2 = add_crack(
        surface,
        rng,
        centre=second,
        angle=second_angle,
        length=0.55 * size,
        width=2.6 * scale,
        contrast=0.75,
        region=region,
    )
    # The pore sits well away from both cracks so that all three defects stay separate in an
    # overlay.
    clearance = ndimage.distance_transform_edt(~(crack_1[1] | crack_2[1]))
    room = np.minimum(clearance, depth_in_part)
    candidates = np.argwhere(room >= min(12 * scale, room.max()))
    pore_row, pore_col = candidates[rng.integers(len(candidates))]
    pore = add_pore(
        surface,
        rng,
        centre=(float(pore_col), float(pore_row)),
        radius=4.5 * scale,
        contrast=0.8,
        region=region,
    )
    return dict(zip(TRIO_NAMES, (crack_1, crack_2, pore)))


def write_overlay_trio(out_dir, size=128, seed=TRIO_SEED):
    """Write crack_1/crack_2/pore .png and their <stem>_mask.png (0/255) into out_dir; return
    paths."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (image, mask) in make_overlay_trio(size, seed).items():
        for path, pixels in (
            (out_dir / f"{name}.png", as_uint8(image)),
            (out_dir / f"{name}_mask.png", mask.astype(np.uint8) * 255),
        ):
            Image.fromarray(pixels).save(path)  # 2-D uint8 -> 8-bit grey
            paths.append(path)
    return paths


def main(argv=None):
    """Command line: regenerate the overlay trio into a folder."""
    parser = argparse.ArgumentParser(
        description="Write the synthetic overlay trio (2 cracks + 1 pore) and masks."
    )
    parser.add_argument("out_dir", help="folder to write into, e.g. data/synthetic")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=TRIO_SEED, help=f"seed (default {TRIO_SEED})")
    args = parser.parse_args(argv)
    for path in write_overlay_trio(args.out_dir, args.size, args.seed):
        print(path)


if __name__ == "__main__":
    main()
