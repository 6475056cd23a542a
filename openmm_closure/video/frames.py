"""Frames of a polymer as images, and images as pixel sets (SPEC §3C's video input).

A frame of bead positions becomes a grey image: each bead a Gaussian blob of width
``sigma = max(|z - z_mean| / 5, 1)`` pixel (beads far from the chain's mean depth look
blurred, as out of focus), centred on the chain's centre of mass so that a fixed field of
view shows every frame alike. A pixel shows the brightest blob that covers it (maximum,
not sum): intensities stay in [0, 1] and the image is exactly the same for every bead
order. Positions are put in a canonical order (lexicographic rows) before the centre is
summed, so the centre, and with it every pixel, is bitwise independent of bead order.

An image becomes a set of pixels, each an element ``(x, y, intensity)`` in [-1, 1]:
``x = 2 (col + 0.5) / W - 1``, ``y = 1 - 2 (row + 0.5) / H`` (up is +y) and
``intensity = 2 I - 1``. :func:`image_to_pixels` keeps every pixel brighter than a
threshold (a set whose size varies from frame to frame); :func:`pixels_to_image` puts a
set back into an image. Datasets hold one particle number per replica for all its
frames, so a rendered dataset keeps the ``K`` brightest pixels of each frame
(:func:`brightest_pixels`; ties broken by raster position, a rule on the image alone and
therefore still independent of bead order). Where a frame lights fewer than ``K``
pixels, the brightest unlit ones (intensity -1) fill the set.

Image size: the reference's 100 x 500 pixels times ``scale`` (``scale = 0.2``: 20 x 100).
The field of view is ``fov`` nm wide, the same for every frame and every dataset rendered
with the same parameters, so ``px_per_nm = width / fov``. The default for an ``n``-bead
chain (:meth:`RenderConfig.for_chain`) is ``max(1.1 L, 11.25 n^0.6)`` nm with ``L = (n - 1)
0.97`` nm the contour length: room for the fully stretched chain, and a frame height (a
fifth of the width) of 5 x 0.45 n^0.6 nm that holds an equilibrium coil (radius of
gyration about 0.45 n^0.6 nm, beads up to 2.2 Rg from the centre in y, measured on
self-avoiding growth walks of 32-300 beads).

This module needs numpy only (no torch, no OpenMM).

Example:
    >>> import numpy as np
    >>> cfg = RenderConfig.for_chain(32, scale=0.3)
    >>> img = render_frame(np.random.default_rng(0).normal(size=(32, 3)), cfg)
    >>> img.shape
    (30, 150)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "REFERENCE_SHAPE",
    "BOND_LENGTH",
    "RenderConfig",
    "canonical_order",
    "render_frame",
    "render_frames",
    "image_to_pixels",
    "pixels_to_image",
    "brightest_pixels",
]

#: (height, width) in pixels of the reference's frames
REFERENCE_SHAPE = (100, 500)
#: mean bond length of the Kremer-Grest chain, nm (sets the default field of view)
BOND_LENGTH = 0.97
_TRUNCATE = 3.0  # blobs are exactly 0 beyond this many sigma


@dataclass(frozen=True)
class RenderConfig:
    """How frames become images and pixel sets.

    Attributes:
        scale: image size = ``REFERENCE_SHAPE`` x scale (rounded), e.g. 0.2 -> 20 x 100.
        fov: width of the field of view in nm (the height follows the aspect ratio).
        n_pixels: K, pixels kept per frame in a rendered dataset (the K brightest).
        threshold: an image pixel is lit when its intensity (in [0, 1]) exceeds this.
        depth_scale: sigma = max(|z - z_mean| px / depth_scale, 1) px (reference: 5).
    """

    scale: float = 0.2
    fov: float = 34.0
    n_pixels: int = 256
    threshold: float = 0.0
    depth_scale: float = 5.0

    def __post_init__(self) -> None:
        for name in ("scale", "fov", "depth_scale"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"render {name} must be a positive number, got {v}")
        if isinstance(self.n_pixels, bool) or int(self.n_pixels) != self.n_pixels or self.n_pixels < 1:
            raise ValueError(f"render n_pixels must be a positive integer, got {self.n_pixels!r}")
        if not 0.0 <= float(self.threshold) < 1.0:
            raise ValueError(f"render threshold must be in [0, 1), got {self.threshold}")
        if self.height < 1 or self.width < 2:
            raise ValueError(f"render scale {self.scale} gives a {self.height} x {self.width} image; use a larger scale")
        if self.n_pixels > self.height * self.width:
            raise ValueError(f"n_pixels {self.n_pixels} exceeds the {self.height} x {self.width} image; "
                             "lower n_pixels or raise scale")

    @classmethod
    def for_chain(cls, n_beads: int, scale: float = 0.2, margin: float = 1.1, **kw) -> "RenderConfig":
        """The default view of an ``n_beads`` chain: ``fov = max(margin L, 11.25 n^0.6)`` nm
        (see the module docstring), ``L = (n - 1) 0.97`` nm.

        Raises ValueError when the image cannot hold the chain: fewer than one pixel per
        bond length, so that neighbouring beads would merge into one blob.
        """
        if n_beads < 2:
            raise ValueError(f"a chain needs at least 2 beads, got {n_beads}")
        fov = max(margin * (n_beads - 1) * BOND_LENGTH, 11.25 * n_beads**0.6)
        cfg = cls(scale=scale, fov=fov, **kw)
        if cfg.px_per_nm * BOND_LENGTH < 1.0:
            raise ValueError(
                f"a {cfg.height} x {cfg.width} image cannot hold a {n_beads}-bead chain "
                f"({cfg.px_per_nm * BOND_LENGTH:.2f} px per bond, at least 1 needed); raise scale "
                f"to at least {scale / (cfg.px_per_nm * BOND_LENGTH):.3g}"
            )
        return cfg

    @property
    def height(self) -> int:
        return int(round(REFERENCE_SHAPE[0] * self.scale))

    @property
    def width(self) -> int:
        return int(round(REFERENCE_SHAPE[1] * self.scale))

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.height, self.width

    @property
    def px_per_nm(self) -> float:
        return self.width / float(self.fov)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(height=self.height, width=self.width, px_per_nm=self.px_per_nm)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RenderConfig":
        return cls(**{k: d[k] for k in ("scale", "fov", "n_pixels", "threshold", "depth_scale") if k in d})


def canonical_order(positions: np.ndarray) -> np.ndarray:
    """Rows of ``positions`` sorted lexicographically (by x, then y, then z).

    Arguments:
        positions: (n, 3) bead positions (any units).

    Returns:
        (n, 3) the same rows in an order that does not depend on the input order.
    """
    p = np.asarray(positions)
    return p[np.lexsort((p[:, 2], p[:, 1], p[:, 0]))]


def render_frame(positions: np.ndarray, config: RenderConfig) -> np.ndarray:
    """One frame as an image.

    Arguments:
        positions: (n, 3) bead positions in nm.
        config: the :class:`RenderConfig`.

    Returns:
        (H, W) float64 image with values in [0, 1]; row 0 is the top (largest y).

    Raises:
        ValueError: non-finite positions, or a bead outside the field of view.
    """
    p = np.asarray(positions, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
        raise ValueError(f"positions must be (n, 3) with n >= 1, got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("positions contain NaN or inf")
    p = canonical_order(p)
    h, w = config.shape
    s = config.px_per_nm
    centre = p.mean(axis=0)
    u = (p[:, 0] - centre[0]) * s + 0.5 * w          # column coordinate, px
    v = 0.5 * h - (p[:, 1] - centre[1]) * s          # row coordinate, px (y up)
    sigma = np.maximum(np.abs(p[:, 2] - centre[2]) * s / config.depth_scale, 1.0)
    outside = (u < 0) | (u > w) | (v < 0) | (v > h)
    if outside.any():
        span = np.ptp(p[:, :2], axis=0)
        raise ValueError(
            f"{int(outside.sum())} bead(s) fall outside the {config.fov:.3g} x {h / s:.3g} nm field of view "
            f"(chain span {span[0]:.3g} x {span[1]:.3g} nm); render with a larger fov"
        )
    image = np.zeros((h, w))
    rows = np.arange(h) + 0.5
    cols = np.arange(w) + 0.5
    for ui, vi, si in zip(u, v, sigma):
        reach = _TRUNCATE * si
        r0, r1 = max(int(math.floor(vi - reach)), 0), min(int(math.ceil(vi + reach)) + 1, h)
        c0, c1 = max(int(math.floor(ui - reach)), 0), min(int(math.ceil(ui + reach)) + 1, w)
        d2 = (rows[r0:r1, None] - vi) ** 2 + (cols[None, c0:c1] - ui) ** 2
        blob = np.where(d2 <= reach * reach, np.exp(-0.5 * d2 / (si * si)), 0.0)
        np.maximum(image[r0:r1, c0:c1], blob, out=image[r0:r1, c0:c1])
    return image


def render_frames(positions: np.ndarray, config: RenderConfig) -> np.ndarray:
    """Frames as images.

    Arguments:
        positions: (F, n, 3) bead positions in nm.

    Returns:
        (F, H, W) float64 images in [0, 1].
    """
    p = np.asarray(positions)
    if p.ndim != 3:
        raise ValueError(f"positions must be (F, n, 3), got shape {p.shape}")
    return np.stack([render_frame(x, config) for x in p])


def _pixel_coords(index: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    row, col = np.divmod(index, w)
    return 2.0 * (col + 0.5) / w - 1.0, 1.0 - 2.0 * (row + 0.5) / h


def _as_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image must be (H, W), got shape {img.shape}")
    return img


def image_to_pixels(image: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Every pixel brighter than ``threshold`` as a set element, in raster order.

    Arguments:
        image: (H, W) image with values in [0, 1].
        threshold: keep pixels with intensity > threshold.

    Returns:
        (P, 3) float64 elements (x, y, intensity), each in [-1, 1]; P varies with the image.
    """
    img = _as_image(image)
    index = np.flatnonzero(img.reshape(-1) > threshold)
    x, y = _pixel_coords(index, img.shape)
    return np.stack([x, y, 2.0 * img.reshape(-1)[index] - 1.0], axis=1)


def brightest_pixels(image: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` brightest pixels of an image as a set of fixed size, in raster order.

    Ties are broken by raster position (earlier first), so the result depends on the
    image alone. A frame with fewer than ``k`` lit pixels is filled up with unlit ones
    (intensity -1), again in raster order.

    Arguments:
        image: (H, W) image with values in [0, 1].
        k: set size, at most H * W.

    Returns:
        (k, 3) float64 elements (x, y, intensity) in [-1, 1].
    """
    img = _as_image(image)
    flat = img.reshape(-1)
    if not 1 <= k <= flat.size:
        raise ValueError(f"k must be in [1, {flat.size}] for a {img.shape[0]} x {img.shape[1]} image, got {k}")
    order = np.lexsort((np.arange(flat.size), -flat))  # brightest first, ties by raster index
    index = np.sort(order[:k])
    x, y = _pixel_coords(index, img.shape)
    return np.stack([x, y, 2.0 * flat[index] - 1.0], axis=1)


def pixels_to_image(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Put a pixel set back into an image (pixels not in the set are 0).

    Arguments:
        pixels: (P, 3) elements (x, y, intensity) in [-1, 1] as made by
            :func:`image_to_pixels` or :func:`brightest_pixels`.
        shape: (H, W) of the image.

    Returns:
        (H, W) float64 image in [0, 1].
    """
    px = np.asarray(pixels, dtype=np.float64)
    if px.ndim != 2 or px.shape[1] != 3:
        raise ValueError(f"pixels must be (P, 3), got shape {px.shape}")
    h, w = int(shape[0]), int(shape[1])
    col = np.rint((px[:, 0] + 1.0) * 0.5 * w - 0.5).astype(np.int64)
    row = np.rint((1.0 - px[:, 1]) * 0.5 * h - 0.5).astype(np.int64)
    if len(px) and (col.min() < 0 or col.max() >= w or row.min() < 0 or row.max() >= h):
        raise ValueError(f"pixel coordinates fall outside a {h} x {w} image")
    image = np.zeros((h, w))
    image[row, col] = 0.5 * (px[:, 2] + 1.0)
    return image
