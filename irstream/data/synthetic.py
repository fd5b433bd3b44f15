"""Synthetic infrared scenes: procedural backgrounds, point-like targets, moving sequences.

Deterministic by seed: the same seed and arguments give the same pixels, bit for bit.
Everything is built in a [0, 1] radiance scale, then the sensor model adds what real IR
cameras add (vignetting, column fixed-pattern noise, temporal noise, dead and hot pixels)
and quantises to 8 or 16 bits.

Targets are Gaussian-like spots (optionally elongated) with a peak of `snr` times the
temporal noise sigma above the local background.  Their mask is the set of pixels where
the spot is above half its peak, so a 1-pixel target has a 1-pixel mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

BACKGROUNDS = ("sky", "sea", "ground")
#: Area of the half-maximum region of a round Gaussian is HALF_MAX_AREA_PER_SIGMA2 * sigma**2.
HALF_MAX_AREA_PER_SIGMA2 = 2.0 * math.pi * math.log(2.0)


# ---- backgrounds ---------------------------------------------------------------------------

def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], base_px: float, octaves: int = 5,
                  persistence: float = 0.55, aspect: float = 1.0) -> np.ndarray:
    """Sum of smoothly upsampled random grids, coarsest first; zero mean, unit std.

    base_px: size of the coarsest feature in pixels; aspect > 1 stretches features horizontally.
    """
    h, w = shape
    out = np.zeros(shape, np.float32)
    amp, cell = 1.0, float(base_px)
    for _ in range(octaves):
        gh, gw = max(2, int(h / cell) + 2), max(2, int(w / (cell * aspect)) + 2)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
        cell = max(1.0, cell / 2.0)
    out -= out.mean()
    return out / (out.std() + 1e-6)


def sky(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Vertical gradient (warmer towards the horizon) with soft clouds of random cover."""
    h, w = shape
    top, bottom = rng.uniform(0.15, 0.4), rng.uniform(0.35, 0.6)
    img = np.linspace(top, bottom, h, dtype=np.float32)[:, None].repeat(w, 1)
    cover = rng.uniform(0.0, 1.0)
    clouds = fractal_noise(rng, shape, base_px=rng.uniform(60, 160), aspect=rng.uniform(1.0, 2.5))
    clouds = np.clip(clouds - (1.2 - 1.6 * cover), 0.0, None)
    return img + rng.uniform(0.05, 0.2) * clouds


def sea(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Sky above a horizon, water below: horizontally stretched waves and sun glint."""
    h, w = shape
    img = sky(rng, shape)
    horizon = int(h * rng.uniform(0.1, 0.5))
    rows = h - horizon
    water = np.linspace(rng.uniform(0.3, 0.45), rng.uniform(0.4, 0.6), rows, dtype=np.float32)[:, None]
    waves = fractal_noise(rng, (rows, w), base_px=rng.uniform(6, 20), octaves=4, aspect=rng.uniform(3, 6))
    img[horizon:] = water + 0.03 * waves
    glint_p = rng.uniform(0.0, 0.004)
    glints = (rng.random((rows, w)) < glint_p).astype(np.float32)
    glints = cv2.GaussianBlur(glints, (0, 0), sigmaX=1.2, sigmaY=0.5) * rng.uniform(0.5, 3.0)
    img[horizon:] += glints
    return img


def ground(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Textured terrain: fractal fields plus warm patches (roads, roofs, rocks) as clutter."""
    img = 0.45 + 0.08 * fractal_noise(rng, shape, base_px=rng.uniform(20, 80), octaves=6, persistence=0.65)
    n_patches = rng.integers(0, 25)
    h, w = shape
    for _ in range(n_patches):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        ax, ay = rng.uniform(2, 12), rng.uniform(2, 12)
        cv2.ellipse(img, (int(cx), int(cy)), (int(ax), int(ay)), rng.uniform(0, 180), 0, 360,
                    float(img[int(cy) % h, int(cx) % w] + rng.uniform(-0.08, 0.12)), -1)
    return cv2.GaussianBlur(img, (0, 0), 0.8)


_BACKGROUND_FNS = {"sky": sky, "sea": sea, "ground": ground}


def background(rng: np.random.Generator, shape: tuple[int, int], kind: str) -> np.ndarray:
    if kind not in _BACKGROUND_FNS:
        raise ValueError(f"unknown background '{kind}'; known: {', '.join(BACKGROUNDS)}")
    return _BACKGROUND_FNS[kind](rng, shape).astype(np.float32)


# ---- sensor --------------------------------------------------------------------------------

@dataclass
class Sensor:
    """The fixed defects and noise of one camera, drawn once per image or sequence.

    noise_sigma: temporal noise, in the [0, 1] radiance scale.
    stripe_sigma: std of the per-column offset (fixed-pattern stripes).
    vignetting: relative radiance loss at the corners.
    dead, hot: flat indices of stuck-low and stuck-high pixels.
    """

    noise_sigma: float
    stripe_sigma: float
    vignetting: float
    columns: np.ndarray = field(repr=False)
    dead: np.ndarray = field(repr=False)
    hot: np.ndarray = field(repr=False)

    @classmethod
    def random(cls, rng: np.random.Generator, shape: tuple[int, int]) -> "Sensor":
        h, w = shape
        stripe = rng.uniform(0.0, 0.01)
        n_bad = rng.integers(0, max(1, h * w // 20000) + 1, size=2)
        return cls(noise_sigma=float(rng.uniform(0.004, 0.02)), stripe_sigma=float(stripe),
                   vignetting=float(rng.uniform(0.0, 0.25)),
                   columns=(stripe * rng.standard_normal(w)).astype(np.float32),
                   dead=rng.choice(h * w, n_bad[0], replace=False), hot=rng.choice(h * w, n_bad[1], replace=False))

    def apply(self, radiance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = radiance.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        img = radiance * (1.0 - self.vignetting * r2 / 2.0) + self.columns[None, :]
        img = img + self.noise_sigma * rng.standard_normal(radiance.shape).astype(np.float32)
        flat = img.reshape(-1)
        flat[self.dead] = 0.0
        flat[self.hot] = 1.0
        return np.clip(img, 0.0, 1.0)


def quantise(img: np.ndarray, bit_depth: int) -> np.ndarray:
    """[0, 1] -> uint8, or uint16 as a 14-bit core with an offset, as many LWIR cameras deliver."""
    if bit_depth == 8:
        return (img * 255.0 + 0.5).astype(np.uint8)
    if bit_depth == 16:
        return (2000.0 + img * 12000.0 + 0.5).astype(np.uint16)
    raise ValueError(f"bit_depth={bit_depth}: 8 or 16")


# ---- targets -------------------------------------------------------------------------------

@dataclass
class Spot:
    """One target's appearance in one frame.  x, y: centre (column, row), sub-pixel."""

    x: float
    y: float
    area_px: float
    snr: float
    elongation: float = 1.0
    angle_rad: float = 0.0


def render_spot(canvas: np.ndarray, spot: Spot, noise_sigma: float) -> np.ndarray | None:
    """Add the spot to canvas in place; return its mask (pixels above half its peak) or None if off-frame."""
    h, w = canvas.shape
    sigma = math.sqrt(max(spot.area_px, 0.3) / HALF_MAX_AREA_PER_SIGMA2)
    sx, sy = sigma * math.sqrt(spot.elongation), sigma / math.sqrt(spot.elongation)
    rad = int(math.ceil(3 * max(sx, sy))) + 1
    x0, x1 = max(0, int(spot.x) - rad), min(w, int(spot.x) + rad + 2)
    y0, y1 = max(0, int(spot.y) - rad), min(h, int(spot.y) + rad + 2)
    if x0 >= x1 or y0 >= y1:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    c, s = math.cos(spot.angle_rad), math.sin(spot.angle_rad)
    u, v = (xx - spot.x) * c + (yy - spot.y) * s, -(xx - spot.x) * s + (yy - spot.y) * c
    prof = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    peak = prof.max()
    if peak < 0.05:
        return None
    amp = spot.snr * noise_sigma / peak
    canvas[y0:y1, x0:x1] += amp * prof
    mask = np.zeros(canvas.shape, bool)
    mask[y0:y1, x0:x1] = prof >= 0.5 * peak
    return mask


def random_spot(rng: np.random.Generator, shape: tuple[int, int], margin: int = 4) -> Spot:
    h, w = shape
    area = float(np.exp(rng.uniform(0.0, math.log(100.0))))  # 1 to 100 px, log-uniform
    return Spot(x=float(rng.uniform(margin, w - margin)), y=float(rng.uniform(margin, h - margin)),
                area_px=area, snr=float(rng.uniform(3.0, 25.0)), elongation=float(rng.uniform(1.0, 2.5)),
                angle_rad=float(rng.uniform(0, math.pi)))


# ---- single images -------------------------------------------------------------------------

def random_scene(rng: np.random.Generator, shape: tuple[int, int], max_targets: int = 4,
                 kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One image and its mask: (H, W) float32 in [0, 1], (H, W) bool."""
    kind = kind or BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    radiance = background(rng, shape, kind)
    sensor = Sensor.random(rng, shape)
    mask = np.zeros(shape, bool)
    for _ in range(rng.integers(1, max_targets + 1)):
        m = render_spot(radiance, random_spot(rng, shape), sensor.noise_sigma)
        if m is not None:
            mask |= m
    return sensor.apply(radiance, rng), mask


def synth_image(seed: int, shape: tuple[int, int] = (256, 256), kind: str | None = None, bit_depth: int = 8):
    """Deterministic image by seed: (raw uint8/uint16 image, bool mask)."""
    img, mask = random_scene(np.random.default_rng(seed), shape, kind=kind)
    return quantise(img, bit_depth), mask


# ---- sequences -----------------------------------------------------------------------------

@dataclass
class Mover:
    """A target moving through a sequence: position in px, velocity in px/frame,
    turn rate in rad/frame (manoeuvres), alive from `start` for `frames` frames."""

    track_id: int
    x: float
    y: float
    vx: float
    vy: float
    area_px: float
    snr: float
    start: int
    frames: int
    turn_rad: float = 0.0

    def step(self) -> None:
        if self.turn_rad:
            c, s = math.cos(self.turn_rad), math.sin(self.turn_rad)
            self.vx, self.vy = c * self.vx - s * self.vy, s * self.vx + c * self.vy
        self.x += self.vx
        self.y += self.vy


def scripted_movers(rng: np.random.Generator, shape: tuple[int, int], n_frames: int, n_targets: int,
                    snr_range: tuple[float, float] = (4.0, 15.0)) -> list[Mover]:
    """A mix of what trackers find hard: a crossing pair, an entry, an exit, a manoeuvre.

    The first two targets cross near the centre around mid-sequence; the third enters from an
    edge a third of the way in; the fourth leaves the frame; the rest turn at random rates.
    Each target's peak SNR is drawn uniformly from snr_range.
    """
    h, w = shape
    movers = []
    mid = n_frames / 2
    for i in range(n_targets):
        area, snr = float(np.exp(rng.uniform(0.0, math.log(30.0)))), float(rng.uniform(*snr_range))
        speed = rng.uniform(0.3, 2.0)
        if i < 2:  # crossing pair: both pass the centre at mid-sequence
            ang = rng.uniform(0, math.pi) + i * math.pi / 2
            vx, vy = speed * math.cos(ang), speed * math.sin(ang)
            m = Mover(i + 1, w / 2 - vx * mid, h / 2 - vy * mid, vx, vy, area, snr, 0, n_frames)
        elif i == 2:  # enters from the left a third of the way in
            m = Mover(i + 1, -2.0, rng.uniform(0.2, 0.8) * h, speed, rng.uniform(-0.3, 0.3), area, snr,
                      n_frames // 3, n_frames)
        elif i == 3:  # heads out through the right edge
            m = Mover(i + 1, w * 0.7, rng.uniform(0.2, 0.8) * h, speed + 1.0, 0.0, area, snr, 0, n_frames)
        else:  # manoeuvring
            ang = rng.uniform(0, 2 * math.pi)
            m = Mover(i + 1, rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, speed * math.cos(ang),
                      speed * math.sin(ang), area, snr, 0, n_frames, turn_rad=float(rng.uniform(-0.04, 0.04)))
        movers.append(m)
    return movers


def synth_sequence(seed: int, n_frames: int, shape: tuple[int, int] = (256, 320), kind: str = "sky",
                   n_targets: int = 4, bit_depth: int = 8, drift_px: tuple[float, float] = (0.15, 0.0),
                   snr_range: tuple[float, float] = (4.0, 15.0)):
    """Yield (raw frame, ground truth rows) per frame, deterministic by seed.

    Ground truth rows are (track_id, x, y, area_px, bbox_xyxy) for the targets visible in
    the frame.  The background drifts by drift_px (x, y) per frame, like slow clouds or a
    slowly panning camera.  snr_range: each target's peak over the temporal noise sigma is
    drawn from it (the default gives the same pixels as before the parameter existed).

    A generator: taking only the first k frames gives exactly the first k frames of the
    full sequence (but n_frames itself shapes the scene, so keep it the same).
    """
    if not 0.0 < snr_range[0] <= snr_range[1]:
        raise ValueError(f"snr_range={snr_range}: need 0 < low <= high")
    rng = np.random.default_rng(seed)
    h, w = shape
    pad = int(abs(drift_px[0]) * n_frames + abs(drift_px[1]) * n_frames) + 4
    world = background(rng, (h + pad, w + pad), kind)
    sensor = Sensor.random(rng, shape)
    movers = scripted_movers(rng, shape, n_frames, n_targets, snr_range)
    for t in range(n_frames):
        ox, oy = drift_px[0] * t, drift_px[1] * t
        m = np.float32([[1, 0, -ox], [0, 1, -oy]])
        radiance = cv2.warpAffine(world, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        rows = []
        for mv in movers:
            if mv.start <= t < mv.start + mv.frames:
                spot = Spot(mv.x, mv.y, mv.area_px, mv.snr)
                mask = render_spot(radiance, spot, sensor.noise_sigma)
                if mask is not None and mask.any() and 0 <= mv.x < w and 0 <= mv.y < h:
                    ys, xs = np.nonzero(mask)
                    rows.append((mv.track_id, mv.x, mv.y, int(mask.sum()),
                                 (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
            if t >= mv.start:
                mv.step()
        yield quantise(sensor.apply(radiance, rng), bit_depth), rows


def mot_rows(frame_index: int, rows) -> list[str]:
    """MOTChallenge ground truth lines (1-based frame): frame,id,left,top,width,height,conf,class,visibility."""
    return [f"{frame_index + 1},{tid},{b[0]},{b[1]},{b[2] - b[0]},{b[3] - b[1]},1,1,1" for tid, _, _, _, b in rows]


# ---- writing to disk -----------------------------------------------------------------------

def write_image_set(out, count: int, seed: int, shape: tuple[int, int], bit_depth: int = 8, test_share: float = 0.5,
                    kind: str | None = None):
    """A SIRST-style folder: images/, masks/ (0/255), splits/train.txt and splits/test.txt."""
    from pathlib import Path

    from irstream.io.imageio import write_png

    out = Path(out)
    for sub in ("images", "masks", "splits"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        img, mask = synth_image(seed * 1_000_003 + i, shape, kind=kind, bit_depth=bit_depth)
        name = f"synth_{i:05d}"
        write_png(out / "images" / f"{name}.png", img)
        write_png(out / "masks" / f"{name}.png", mask.astype(np.uint8) * 255)
        names.append(name)
    n_test = int(round(count * test_share))
    (out / "splits" / "train.txt").write_text("".join(f"{n}\n" for n in names[n_test:]))
    (out / "splits" / "test.txt").write_text("".join(f"{n}\n" for n in names[:n_test]))
    return names


def write_sequence(out, n_frames: int, seed: int, shape: tuple[int, int], kind: str = "sky", n_targets: int = 4,
                   bit_depth: int = 8, snr_range: tuple[float, float] = (4.0, 15.0)) -> int:
    """Frames as numbered PNGs (8-bit) or TIFFs (16-bit) plus gt/gt.txt in MOTChallenge format.

    TIFFs are Deflate-compressed with horizontal differencing (lossless; about a sixth smaller than
    OpenCV's default LZW on noisy 16-bit frames, and read by any TIFF reader)."""
    from pathlib import Path

    out = Path(out)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    ext = "png" if bit_depth == 8 else "tif"
    params = [] if ext == "png" else [cv2.IMWRITE_TIFF_COMPRESSION, cv2.IMWRITE_TIFF_COMPRESSION_ADOBE_DEFLATE,
                                      cv2.IMWRITE_TIFF_PREDICTOR, cv2.IMWRITE_TIFF_PREDICTOR_HORIZONTAL]
    lines = []
    for t, (frame, rows) in enumerate(synth_sequence(seed, n_frames, shape, kind, n_targets, bit_depth,
                                                     snr_range=snr_range)):
        if not cv2.imwrite(str(out / f"{t + 1:06d}.{ext}"), frame, params):
            raise ValueError(f"{out / f'{t + 1:06d}.{ext}'}: OpenCV could not write this frame")
        lines += mot_rows(t, rows)
    (out / "gt" / "gt.txt").write_text("".join(f"{ln}\n" for ln in lines))
    return len(lines)


def write_clip(path, n_frames: int, seed: int, shape: tuple[int, int], kind: str = "sky", n_targets: int = 4,
               fps: float = 25.0, snr_range: tuple[float, float] = (4.0, 15.0)) -> int:
    """An 8-bit gray video, FFV1 in Matroska (lossless: a 1-pixel target survives), plus its
    ground truth beside it as <name>.gt.txt (MOTChallenge).  Returns the number of gt rows.

    The frames are exactly those of synth_sequence(seed, n_frames, shape, kind, n_targets,
    bit_depth=8, snr_range=snr_range); decoding the file gives them back bit for bit."""
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() != ".mkv":
        raise ValueError(f"{path}: the lossless FFV1 clip must be a .mkv file")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (shape[1], shape[0]), isColor=False)
    if not writer.isOpened():
        raise ValueError(f"{path}: OpenCV could not open an FFV1 writer for it "
                         "(a path that cannot be written, or an OpenCV built without FFmpeg)")
    lines = []
    try:
        for t, (frame, rows) in enumerate(synth_sequence(seed, n_frames, shape, kind, n_targets, bit_depth=8,
                                                         snr_range=snr_range)):
            writer.write(frame)
            lines += mot_rows(t, rows)
    finally:
        writer.release()
    path.with_suffix(".gt.txt").write_text("".join(f"{ln}\n" for ln in lines))
    return len(lines)
