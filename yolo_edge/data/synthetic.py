"""Synthetic scenes: a labelled detection dataset made on the fly, deterministic by seed.

This is the embedded default that lets every command run offline. Each image is generated from
``np.random.default_rng([seed, index])`` alone, so the same ``(seed, index)`` gives the same
pixels and labels whatever the access order, process or worker.

A scene is a textured, noisy background (colour gradient with soft blobs, low-frequency cloud
texture, a few thin lines) with 0 to 12 objects of eight shape classes (:data:`SYNTHETIC_NAMES`)
in random colours chosen to contrast with what lies under them, rotated, with aspect-ratio
jitter, and sized log-uniformly so that COCO's small (< 32² px), medium and large (> 96² px)
ranges are all well represented. About 5 % of the images are empty. Objects drawn later occlude
earlier ones; an object more than 60 % hidden is dropped from the labels. Gaussian-like sensor
noise is added last.

Labels are exact: each box is the tight extent of the pixels the object's polygon fills
(computed from the rasterised mask, clipped to the image), in continuous pixel coordinates
(pixel ``j`` covers ``[j, j + 1]``). The box is that of the whole object even where a later
object covers part of it.

Canonical splits (:func:`synthetic_split`), disjoint because each uses its own seed:

=========  ====  ======  ==========================================
split      seed  images  use
=========  ====  ======  ==========================================
``train``  0     5000    training (override ``n`` for longer runs)
``val``    1     200     held-out evaluation (mAP, parity)
``calib``  2     512     INT8 calibration
=========  ====  ======  ==========================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import DatasetError
from .base import Dataset, Sample

SYNTHETIC_NAMES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "ring", "cross", "hexagon", "ellipse",
)

# Default image shapes (h, w), one picked per image so letterbox padding is exercised.
DEFAULT_SHAPES: tuple[tuple[int, int], ...] = ((480, 640), (640, 480), (640, 640), (360, 640))


@dataclass(frozen=True)
class SplitSpec:
    seed: int
    n: int
    purpose: str


SPLITS: dict[str, SplitSpec] = {
    "train": SplitSpec(seed=0, n=5000, purpose="training"),
    "val": SplitSpec(seed=1, n=200, purpose="held-out evaluation"),
    "calib": SplitSpec(seed=2, n=512, purpose="INT8 calibration"),
}


@dataclass(frozen=True)
class SceneConfig:
    """Knobs of the generator; the defaults define the canonical splits."""

    max_objects: int = 12
    empty_fraction: float = 0.05  # share of images with no objects
    min_size: float = 10.0  # smallest object, sqrt of the nominal box area in px
    max_size_fraction: float = 0.7  # largest object, as a share of the shorter image side
    max_hidden: float = 0.6  # drop an object from the labels when more of it is hidden
    max_truncation: float = 0.2  # at most this share of an object's width/height leaves the image
    noise_sigma: tuple[float, float] = (2.0, 10.0)  # per-image noise std range, grey levels
    min_contrast: int = 150  # L1 BGR distance between an object and what lies under it


# --- shapes: polygons in unit coordinates (roughly [-1, 1]²), and aspect-ratio jitter ranges ---

def _regular(n: int, r: float = 1.0, phase: float = 0.0) -> np.ndarray:
    a = phase + np.arange(n) * (2 * np.pi / n)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    a = -np.pi / 2 + np.arange(2 * points) * (np.pi / points)
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _cross(arm: float = 0.3) -> np.ndarray:
    a = arm
    return np.array([
        [-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a],
        [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a],
    ], float)


_CIRCLE = _regular(64)
# class index -> (list of polygons filled together (even-odd, so a nested one is a hole), aspect range)
_SHAPES: tuple[tuple[list[np.ndarray], tuple[float, float]], ...] = (
    ([_CIRCLE], (0.95, 1.05)),  # circle
    ([np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)], (0.8, 1.25)),  # square
    ([_regular(3, phase=-np.pi / 2)], (0.8, 1.25)),  # triangle
    ([_star()], (0.85, 1.18)),  # star
    ([_CIRCLE, 0.55 * _CIRCLE], (0.9, 1.1)),  # ring
    ([_cross()], (0.8, 1.25)),  # cross
    ([_regular(6)], (0.85, 1.18)),  # hexagon
    ([_CIRCLE], (1.7, 2.6)),  # ellipse
)
assert len(_SHAPES) == len(SYNTHETIC_NAMES)

_SHIFT = 4  # sub-pixel bits for cv2.fillPoly
_NOISE_BANK_SIZE = 1024
_noise_bank_cache: np.ndarray | None = None


def _noise_bank() -> np.ndarray:
    """A fixed ``uint8`` noise tile (mean 128, std 32) shared by all seeds; images take random crops.

    Drawing fresh Gaussian noise per image costs ~10 ms; a crop of a fixed tile costs nothing and
    is just as deterministic.
    """
    global _noise_bank_cache
    if _noise_bank_cache is None:
        rng = np.random.default_rng(20240607)
        bank = rng.normal(128.0, 32.0, (_NOISE_BANK_SIZE, _NOISE_BANK_SIZE, 3))
        _noise_bank_cache = np.clip(bank, 0, 255).astype(np.uint8)
    return _noise_bank_cache


def _noise_crop(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bank = _noise_bank()
    B = bank.shape[0]
    if h > B or w > B:
        bank = np.tile(bank, (-(-h // B), -(-w // B), 1))
    y = int(rng.integers(0, bank.shape[0] - h + 1))
    x = int(rng.integers(0, bank.shape[1] - w + 1))
    return bank[y:y + h, x:x + w]


@dataclass(eq=False)
class Scene:
    """One generated scene. ``background`` (debug only) is the same image without the objects,
    with the same noise, so ``image != background`` marks exactly the object pixels."""

    image: np.ndarray
    xyxy: np.ndarray  # float32 (N, 4)
    class_ids: np.ndarray  # int32 (N,)
    background: np.ndarray | None = None


def _background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour gradient with soft blobs, cloud texture and thin lines; returns (image, base colour)."""
    base = rng.integers(30, 226, 3)
    g = int(rng.integers(2, 5))
    grid = np.clip(base + rng.integers(-70, 71, (g, g, 3)), 0, 255).astype(np.uint8)
    lh, lw = max(2, h // 8), max(2, w // 8)
    low = cv2.resize(grid, (lw, lh), interpolation=cv2.INTER_LINEAR)
    for _ in range(int(rng.integers(0, 8))):  # soft blobs, drawn at 1/8 resolution
        colour = np.clip(base + rng.integers(-50, 51, 3), 0, 255).tolist()
        centre = (int(rng.integers(0, lw)), int(rng.integers(0, lh)))
        axes = (int(rng.integers(1, max(2, lw // 3))), int(rng.integers(1, max(2, lh // 3))))
        cv2.ellipse(low, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    beta = float(rng.uniform(0.0, 0.8))  # low-frequency cloud texture, added at 1/8 resolution
    if beta > 0.05:
        cloud = cv2.resize(_noise_crop(rng, max(2, lh // 3), max(2, lw // 3)), (lw, lh),
                           interpolation=cv2.INTER_CUBIC)
        low = cv2.addWeighted(low, 1.0, cloud, beta, -128.0 * beta)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(0, 9))):  # thin lines, low contrast
        colour = np.clip(base + rng.integers(-60, 61, 3), 0, 255).tolist()
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p1, p2, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    return img, base


def _pick_colour(rng: np.random.Generator, under: np.ndarray, min_contrast: int) -> np.ndarray:
    """A random colour at L1 distance >= min_contrast from ``under`` (mean BGR below the object)."""
    for _ in range(12):
        c = rng.integers(0, 256, 3)
        d = np.abs(c - under)
        if d.sum() >= min_contrast and d.max() >= min_contrast // 2:
            return c
    return np.where(under < 128, 255, 0)  # the farthest corner of the colour cube


def render_scene(
    rng: np.random.Generator,
    shape: tuple[int, int],
    config: SceneConfig = SceneConfig(),
    n_objects: int | None = None,
    debug: bool = False,
) -> Scene:
    """Draw one scene of ``shape`` ``(h, w)`` from ``rng``.

    Args:
        n_objects: objects to draw (before occlusion filtering); random by ``config`` if None.
        debug: also return the background with the same noise (see :class:`Scene`).
    """
    h, w = int(shape[0]), int(shape[1])
    img, _ = _background(rng, h, w)
    bg = img.copy() if debug else None

    if n_objects is None:
        empty = rng.random() < config.empty_fraction
        n_objects = 0 if empty else int(rng.integers(1, config.max_objects + 1))
    n_objects = min(int(n_objects), 254)

    label_map = np.zeros((h, w), np.uint8)  # 1 + index of the object visible at each pixel
    boxes, classes, areas, regions = [], [], [], []
    short = min(h, w)
    s_lo = math.log(config.min_size)
    s_hi = math.log(max(config.min_size * 1.01, config.max_size_fraction * short))
    for _ in range(n_objects):
        cls = int(rng.integers(0, len(_SHAPES)))
        polys, (a_lo, a_hi) = _SHAPES[cls]
        size = math.exp(rng.uniform(s_lo, s_hi))  # sqrt of the nominal box area
        aspect = math.exp(rng.uniform(math.log(a_lo), math.log(a_hi)))
        if rng.random() < 0.5 and cls != 7:
            aspect = 1.0 / aspect
        sx, sy = 0.5 * size * math.sqrt(aspect), 0.5 * size / math.sqrt(aspect)
        theta = rng.uniform(0, 2 * np.pi)
        c, s = math.cos(theta), math.sin(theta)
        rot = np.array([[c * sx, s * sx], [-s * sy, c * sy]])  # scale, then rotate: p @ rot
        polys = [p @ rot for p in polys]
        lo = polys[0].min(0)
        hi = polys[0].max(0)
        ext = hi - lo  # (bw, bh) of the object
        t = config.max_truncation
        cx_lo, cx_hi = -lo[0] - t * ext[0], w - hi[0] + t * ext[0]
        cy_lo, cy_hi = -lo[1] - t * ext[1], h - hi[1] + t * ext[1]
        cx = rng.uniform(cx_lo, cx_hi) if cx_hi > cx_lo else w / 2
        cy = rng.uniform(cy_lo, cy_hi) if cy_hi > cy_lo else h / 2
        # Continuous coords -> OpenCV's pixel-centre coords (pixel j has its centre at j + 0.5).
        polys = [p + (cx - 0.5, cy - 0.5) for p in polys]
        x0 = max(0, int(math.floor(cx + lo[0])) - 1)
        y0 = max(0, int(math.floor(cy + lo[1])) - 1)
        x1 = min(w, int(math.ceil(cx + hi[0])) + 2)
        y1 = min(h, int(math.ceil(cy + hi[1])) + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        pts = [np.round((p - (x0, y0)) * (1 << _SHIFT)).astype(np.int32) for p in polys]
        cv2.fillPoly(mask, pts, 1, cv2.LINE_8, _SHIFT)
        bx, by, bw, bh = cv2.boundingRect(mask)  # tight extent of the filled pixels
        if bw == 0 or bh == 0:
            continue
        region = img[y0:y1, x0:x1]
        under = np.array(cv2.mean(region, mask)[:3])
        colour = _pick_colour(rng, under, config.min_contrast).tolist()
        # Draw the same polygons with the same rasteriser: exactly the mask's pixels.
        cv2.fillPoly(region, pts, colour, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(label_map[y0:y1, x0:x1], pts, len(boxes) + 1, cv2.LINE_8, _SHIFT)
        boxes.append((x0 + bx, y0 + by, x0 + bx + bw, y0 + by + bh))
        regions.append((y0, y1, x0, x1))
        classes.append(cls)
        areas.append(cv2.countNonZero(mask))

    sigma = float(rng.uniform(*config.noise_sigma))
    noise = _noise_crop(rng, h, w)
    alpha = sigma / 32.0
    img = cv2.addWeighted(img, 1.0, noise, alpha, -128.0 * alpha)
    if bg is not None:
        bg = cv2.addWeighted(bg, 1.0, noise, alpha, -128.0 * alpha)

    keep = [
        cv2.countNonZero((label_map[y0:y1, x0:x1] == k + 1).view(np.uint8))
        >= (1.0 - config.max_hidden) * areas[k]
        for k, (y0, y1, x0, x1) in enumerate(regions)
    ]
    keep = np.asarray(keep, bool)
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)[keep]
    class_ids = np.asarray(classes, np.int32).reshape(-1)[keep]
    return Scene(img, xyxy, class_ids, bg)


class SyntheticScenes(Dataset):
    """``n`` synthetic scenes; sample ``i`` depends only on ``(seed, i)``.

    Args:
        n: number of images.
        seed: dataset seed (the canonical splits use 0 = train, 1 = val, 2 = calib).
        size: fixed image shape ``(h, w)`` (an int for square); ``None`` picks one of
            :data:`DEFAULT_SHAPES` per image (640 px on the long side, several aspect ratios).
        config: generator settings.
    """

    names = SYNTHETIC_NAMES

    def __init__(self, n: int, seed: int = 0, size: int | tuple[int, int] | None = None,
                 config: SceneConfig | None = None):
        if int(n) < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n = int(n)
        self.seed = int(seed)
        if isinstance(size, (int, np.integer)):
            size = (int(size), int(size))
        if size is not None:
            size = (int(size[0]), int(size[1]))
            if min(size) < 8:
                raise ValueError(f"synthetic image size must be at least 8 px, got {size}")
        self.size = size
        self.config = config or SceneConfig()
        super().__init__(f"synthetic(n={self.n}, seed={self.seed})")
        self.summary.n_images = self.n

    def __len__(self) -> int:
        return self.n

    def scene(self, index: int, debug: bool = False) -> Scene:
        """The full :class:`Scene` of ``index`` (with the background when ``debug``)."""
        rng = np.random.default_rng([self.seed, int(index)])
        shape = self.size or DEFAULT_SHAPES[int(rng.integers(0, len(DEFAULT_SHAPES)))]
        return render_scene(rng, shape, self.config, debug=debug)

    def _load(self, index: int) -> Sample:
        sc = self.scene(index)
        return Sample(sc.image, sc.xyxy, sc.class_ids, image_id=index, path="")

    def __repr__(self) -> str:
        return f"SyntheticScenes(n={self.n}, seed={self.seed}, size={self.size})"


def synthetic_split(
    name: str, n: int | None = None, size: int | tuple[int, int] | None = None
) -> SyntheticScenes:
    """The canonical synthetic dataset ``name`` in ``train`` / ``val`` / ``calib`` (see module doc).

    The splits are disjoint by seed. ``n`` overrides the number of images (a prefix or extension
    of the same sequence: image ``i`` is the same whatever ``n``).
    """
    if name not in SPLITS:
        raise DatasetError(f"unknown synthetic split {name!r}; choose one of {', '.join(SPLITS)}")
    spec = SPLITS[name]
    return SyntheticScenes(spec.n if n is None else n, seed=spec.seed, size=size)
