"""The overlay explorer's latent-plane picture: where the sources' cluster centres, the background
vectors z_bg and the shown overlay's latent vector lie in the plane of the first two latent
dimensions, and which latent point a click on the picture means.

The picture is `vae_overlay.widgets.ScatterMarker`, the latent explorer's clickable scatter
(rendered once with equal aspect; a red ring at a point; a pixel mapped back to latent coordinates),
with the centres painted over it as discs in the sources' colours and z_bg as dark (encoded
background) and light grey (mean of the centres) discs. Its dashed box is the region of those points
and of the overlays of all sources (latent sum and offset sum), widened as the latent explorer
widens its sliders' region (`widgets.occupied_ranges`): where the explorer's overlays land with the
default weights. With more than two latent dimensions the picture shows z1 and z2, and a click keeps
the other coordinates.
"""

from __future__ import annotations

import numpy as np

from vae_overlay.overlay_methods import combine
from vae_overlay.widgets import ScatterMarker, occupied_ranges, png_bytes

# the z_bg discs' colours, by the keys of overlay_explorer.BACKGROUNDS
BACKGROUND_SHADES = {"image": (40, 40, 40), "centres": (170, 170, 170)}


def disc(radius: int) -> np.ndarray:
    """(row, column) offsets of the pixels of a filled disc of `radius` pixels around (0, 0)."""
    rows, columns = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return np.argwhere(np.hypot(rows, columns) <= radius + 0.25) - radius


class LatentPlane:
    """The latent plane of `centres` (k, d) and the background vectors `backgrounds` ({"image":
    z_bg, "centres": z_bg}), the centres drawn in `colours` (one RGB tuple each), `size_px` square.

    `png(z)` is the picture with a red ring at z (none for z None), `spot(z)` the ring's pixel (so
    that an unchanged picture is not sent again) and `latent(row, column, around)` the latent point
    under a pixel: `around` with its first two coordinates replaced."""

    def __init__(self, centres, backgrounds: dict, colours, size_px: int = 256):
        centres = np.asarray(centres, np.float64)
        landmarks = np.concatenate(
            [
                centres,
                np.stack(list(backgrounds.values())),
                combine("sum", centres)[None],
                combine("offset", centres, backgrounds["image"])[None],
            ]
        )
        self.marker = ScatterMarker(
            centres, size_px=size_px, limits=occupied_ranges(landmarks), marker_px=7
        )
        for key, z in backgrounds.items():
            self.paint(z, 4, BACKGROUND_SHADES[key])
        for z, colour in zip(centres, colours):
            self.paint(z, 5, colour)

    def paint(self, z, radius: int, colour) -> None:
        """A filled disc at latent point z on the picture (clamped to the axes edge, like the
        ring)."""
        spots = disc(radius) + self.marker.pixel(z)
        height, width = self.marker.base.shape[:2]
        inside = (spots >= 0).all(axis=1) & (spots[:, 0] < height) & (spots[:, 1] < width)
        self.marker.base[spots[inside, 0], spots[inside, 1]] = colour

    def spot(self, z) -> tuple[int, int] | None:
        """The pixel of the ring for z; None for no ring."""
        return None if z is None else self.marker.pixel(z)

    def png(self, z=None) -> bytes:
        """PNG bytes of the picture with a red ring at z (none for z None)."""
        return png_bytes(self.marker.base) if z is None else self.marker.png(z)

    def latent(self, row: float, column: float, around) -> np.ndarray:
        """The latent point (d,) float64 under a pixel of the picture: `around` with the plane's two
        coordinates replaced by the pixel's."""
        z = np.array(around, np.float64)
        z[list(self.marker.dims)] = self.marker.latent(row, column)
        return z
