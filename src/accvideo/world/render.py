"""Rendering: a clip is a pure function of (attributes, seed, WorldConfig); anti-aliased shapes on a background."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from accvideo.world.attributes import Attributes

# RGB in [0, 1]; chosen so every colour stands out on every background.
COLOUR_RGB: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.10, 0.72, 0.20),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.85, 0.10),
    "purple": (0.58, 0.18, 0.80),
    "orange": (1.00, 0.55, 0.05),
}
BACKGROUND_RGB: dict[str, tuple[float, float, float]] = {
    "grey": (0.50, 0.50, 0.50),
    "black": (0.06, 0.06, 0.06),
    "white": (0.93, 0.93, 0.93),
}
# Motion -> unit direction (dx, dy) in image coordinates (y grows downwards).
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "still": (0.0, 0.0),
}


@dataclass(frozen=True)
class WorldConfig:
    """Rendering parameters; raise texture / noise / jitter to make the world harder."""

    frames: int = 17
    height: int = 64
    width: int = 64
    size_range: tuple[float, float] = (0.16, 0.21)  # shape radius, as a fraction of min(height, width)
    travel_range: tuple[float, float] = (0.36, 0.44)  # path length over the clip, as a fraction of the axis
    rotation_jitter: float = 0.25  # max |rotation| of polygons, radians
    colour_jitter: float = 0.05  # max relative per-channel change of the shape colour
    background_jitter: float = 0.03  # max absolute per-channel change of the background
    texture: float = 0.0  # amplitude of the background's seeded sine texture (0: flat)
    noise: float = 0.0  # std of per-pixel Gaussian noise added last
    margin: float = 1.5  # pixels kept free between the shape and the border

    def __post_init__(self):
        if self.frames < 1 or self.height < 8 or self.width < 8:
            raise ValueError(f"a clip needs >= 1 frame and >= 8x8 pixels; got {self.frames}x{self.height}x{self.width}")
        lo, hi = self.size_range
        if not 0 < lo <= hi < 0.25:
            raise ValueError(f"size_range must satisfy 0 < lo <= hi < 0.25; got {self.size_range}")
        tlo, thi = self.travel_range
        if not 0 <= tlo <= thi or 2.4 * hi + thi > 0.95:  # 2.4: the star's tips reach 1.2 radii
            raise ValueError(f"travel_range {self.travel_range} with size_range {self.size_range} leaves the frame")
        if min(self.rotation_jitter, self.colour_jitter, self.background_jitter, self.texture, self.noise) < 0:
            raise ValueError("jitters, texture and noise must be >= 0")


def _polygon(shape: str) -> np.ndarray:
    """Vertices (k, 2) of a polygon shape with circumradius 1, pointing up."""
    if shape == "square":
        angles, radii = np.pi / 4 + np.arange(4) * np.pi / 2, np.full(4, 1.1)
    elif shape == "triangle":
        angles, radii = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3, np.full(3, 1.15)
    elif shape == "star":
        angles, radii = -np.pi / 2 + np.arange(10) * np.pi / 5, np.tile([1.2, 0.5], 5)
    else:
        raise ValueError(f"no polygon for shape {shape!r}")
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _polygon_sdf(px: np.ndarray, py: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) from points to a closed polygon; even-odd rule for the sign."""
    dist = np.full(px.shape, np.inf)
    inside = np.zeros(px.shape, dtype=bool)
    for (ax, ay), (bx, by) in zip(verts, np.roll(verts, -1, axis=0), strict=True):
        ex, ey = bx - ax, by - ay
        t = np.clip(((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        dist = np.minimum(dist, np.hypot(px - ax - t * ex, py - ay - t * ey))
        crosses = (ay > py) != (by > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = ax + (py - ay) * ex / (ey if ey != 0 else np.inf)
        inside ^= crosses & (px < x_cross)
    return np.where(inside, -dist, dist)


def coverage(shape: str, px: np.ndarray, py: np.ndarray, radius: float, angle: float = 0.0) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape centred at 0 for pixel-centre offsets (px, py)."""
    if shape == "circle":
        sdf = np.hypot(px, py) - radius
    else:
        c, s = math.cos(angle), math.sin(angle)  # rotate points by -angle = rotate the shape by +angle
        sdf = _polygon_sdf((c * px + s * py) / radius, (-s * px + c * py) / radius, _polygon(shape)) * radius
    return np.clip(0.5 - sdf, 0.0, 1.0)  # a one-pixel soft edge


def _background(attrs: Attributes, cfg: WorldConfig, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) background: jittered flat colour plus an optional seeded sine texture."""
    base = np.asarray(BACKGROUND_RGB[attrs.background]) + rng.uniform(-1, 1, 3) * cfg.background_jitter
    bg = np.broadcast_to(base, (cfg.height, cfg.width, 3)).copy()
    if cfg.texture > 0:
        yy, xx = np.mgrid[0 : cfg.height, 0 : cfg.width] / max(cfg.height, cfg.width)
        for _ in range(3):  # three gratings of random frequency, orientation and phase
            f, th, ph = rng.uniform(2, 8), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
            bg += (cfg.texture / 3) * np.sin(2 * np.pi * f * (xx * np.cos(th) + yy * np.sin(th)) + ph)[..., None]
    return bg


def trajectory(attrs: Attributes, cfg: WorldConfig, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Shape centres (F, 2) as (x, y) pixel coordinates, and the radius; the whole path stays inside."""
    side = min(cfg.height, cfg.width)
    radius = rng.uniform(*cfg.size_range) * side
    dx, dy = DIRECTIONS[attrs.motion]
    extent = np.array([cfg.width, cfg.height], dtype=np.float64)
    travel = rng.uniform(*cfg.travel_range) * extent * np.abs([dx, dy])  # zero on the still axis
    reach = radius * 1.2 + cfg.margin  # the star's tips reach 1.2 radii
    start_lo = reach + np.where(np.array([dx, dy]) < 0, travel, 0.0)
    start_hi = extent - reach - np.where(np.array([dx, dy]) > 0, travel, 0.0)
    start = start_lo + rng.uniform(0, 1, 2) * (start_hi - start_lo)
    t = np.linspace(0.0, 1.0, cfg.frames)[:, None] if cfg.frames > 1 else np.zeros((1, 1))
    return start + t * travel * np.sign([dx, dy]), radius


def render(attrs: Attributes, seed: int, cfg: WorldConfig | None = None) -> np.ndarray:
    """The clip of `attrs` for `seed`: float32 (F, H, W, 3) in [0, 1]; identical for identical inputs."""
    cfg = cfg or WorldConfig()
    rng = np.random.default_rng([int(seed), 0x5EED])
    centres, radius = trajectory(attrs, cfg, rng)
    angle = 0.0 if attrs.shape == "circle" else rng.uniform(-1, 1) * cfg.rotation_jitter
    colour = np.clip(np.asarray(COLOUR_RGB[attrs.colour]) * (1 + rng.uniform(-1, 1, 3) * cfg.colour_jitter), 0, 1)
    bg = _background(attrs, cfg, rng)
    # Only a window around each centre can be covered: evaluate the shape there, for all frames at once.
    half = int(math.ceil(radius * 1.25)) + 2
    corner = np.floor(centres).astype(int) - half  # (F, 2) top-left pixel of each window
    offs = np.arange(2 * half + 1)
    px = (corner[:, 0, None, None] + offs[None, None, :] + 0.5) - centres[:, 0, None, None]
    py = (corner[:, 1, None, None] + offs[None, :, None] + 0.5) - centres[:, 1, None, None]
    cover = coverage(attrs.shape, px, py, radius, angle)  # (F, S, S)
    alpha = np.zeros((cfg.frames, cfg.height + 4 * half, cfg.width + 4 * half))  # padded: windows never clip
    for f, (x0, y0) in enumerate(corner):
        alpha[f, y0 + 2 * half : y0 + 4 * half + 1, x0 + 2 * half : x0 + 4 * half + 1] = cover[f]
    alpha = alpha[:, 2 * half : 2 * half + cfg.height, 2 * half : 2 * half + cfg.width, None]
    video = bg[None] * (1 - alpha) + colour * alpha
    if cfg.noise > 0:
        video = video + rng.normal(0.0, cfg.noise, video.shape)
    return np.clip(video, 0.0, 1.0).astype(np.float32)


def render_batch(items: list[tuple[Attributes, int]], cfg: WorldConfig | None = None) -> np.ndarray:
    """Clips of several (attributes, seed) items stacked: (B, F, H, W, 3) float32."""
    cfg = cfg or WorldConfig()
    if not items:
        return np.zeros((0, cfg.frames, cfg.height, cfg.width, 3), dtype=np.float32)
    return np.stack([render(a, s, cfg) for a, s in items])
