"""Tiles that did not change keep their maps (irstream.model.reuse): on real frames of the
shipped sky video, a repeated frame runs no tile, a change runs only the tiles it touches, and
what comes out is what running every tile gives."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA
from irstream.model.reuse import TileMemory
from irstream.model.segment import tiled

SKY = Path(__file__).resolve().parents[1] / "sample_videos" / "sky_drones.mkv"
CLIP = SHARED_DATA / "antiuav-clips" / "20190925_200805_1_9.mp4"
TILE, OVERLAP = 96, 16


def frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(SKY))
    out = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2GRAY).astype(np.float32) / 255 for _ in range(n)]
    cap.release()
    return out


class Counting:
    """A stand-in model that depends on the whole tile (as GroupNorm does) and counts tiles."""

    def __init__(self):
        self.tiles = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.tiles += len(batch)
        x = batch[:, 0]
        return x - x.mean(axis=(1, 2), keepdims=True)


def test_a_repeated_frame_runs_no_tile_and_keeps_its_map():
    img = frames(1)[0]
    fn, memory = Counting(), TileMemory(levels=4, max_frames=10)
    first = tiled(fn, img, TILE, OVERLAP, memory)
    all_tiles = fn.tiles
    again = tiled(fn, img.copy(), TILE, OVERLAP, memory)
    assert all_tiles > 4 and fn.tiles == all_tiles
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(first, tiled(Counting(), img, TILE, OVERLAP))


def test_a_change_runs_only_the_tiles_it_touches_and_matches_running_them_all():
    img = frames(1)[0]
    fn, memory = Counting(), TileMemory(levels=4, max_frames=10)
    tiled(fn, img, TILE, OVERLAP, memory)
    n_tiles = fn.tiles
    moved = img.copy()
    moved[10:14, 10:14] = 1.0  # a bright target appears in the top-left corner: one tile
    out = tiled(fn, moved, TILE, OVERLAP, memory)
    assert fn.tiles == n_tiles + 1 and memory.tiles_kept == n_tiles - 1
    np.testing.assert_array_equal(out, tiled(Counting(), moved, TILE, OVERLAP))


def test_noise_below_the_levels_keeps_the_maps_and_the_oldest_are_refreshed():
    img = frames(1)[0]
    rng = np.random.default_rng(0)
    fn, memory = Counting(), TileMemory(levels=4, max_frames=3)
    tiled(fn, img, TILE, OVERLAP, memory)
    n_tiles = fn.tiles
    for _ in range(3):  # sensor noise of 0.5 grey levels: nothing runs
        tiled(fn, np.clip(img + rng.normal(0, 0.5 / 255, img.shape).astype(np.float32), 0, 1), TILE, OVERLAP, memory)
    assert fn.tiles == n_tiles
    tiled(fn, img, TILE, OVERLAP, memory)  # 4th kept frame in a row: over max_frames, all run
    assert fn.tiles == 2 * n_tiles


@pytest.mark.skipif(not CLIP.is_file(), reason=f"{CLIP} is not present")
def test_a_real_clip_keeps_most_tiles_and_finds_what_running_all_finds():
    """A real 640x512 drone clip (H.264, as a camera sends it) with the shipped model: most
    tiles are kept, and the map differs from running every tile only by little."""
    from irstream.detect.detector import Detector
    from irstream.model.config import ModelConfig

    cap = cv2.VideoCapture(str(CLIP))
    clip = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2GRAY).astype(np.float32) / 255 for _ in range(8)]
    cap.release()
    plain = Detector(ModelConfig(device="cpu", runtime="torch"), threads=1)
    kept = Detector(ModelConfig(device="cpu", runtime="torch", reuse_levels=6), threads=1)
    diffs = [np.abs(plain.segmenter.batch([img])[0] - kept.segmenter.batch([img])[0]).max() for img in clip]
    memory = kept.segmenter.memory
    assert memory.tiles_kept > memory.tiles_run / 2, (memory.tiles_kept, memory.tiles_run)
    assert max(diffs) < 0.5, diffs


def test_a_tile_whose_map_holds_a_target_runs_on_every_frame():
    """The blur hides much of a 1-2 px target's contrast: a tile with a target in its map is
    never kept, so the target is never reported where it was."""
    img = frames(1)[0] * 0.5  # the scene dimmed: the stand-in's map stays below 0.5 but at the target
    fn, memory = Counting(), TileMemory(levels=4, max_frames=10, hot=0.6)
    hot = img.copy()
    hot[10:14, 10:14] = 1.0  # the stand-in model's map reaches ~0.8 there: a target
    tiled(fn, hot, TILE, OVERLAP, memory)
    n_tiles = fn.tiles
    for _ in range(3):
        tiled(fn, hot, TILE, OVERLAP, memory)
    assert fn.tiles == n_tiles + 3  # the target's tile each time, the others kept


def test_a_cap_bounds_the_tiles_run_per_frame_and_every_tile_catches_up():
    """A gain flicker changes every tile: with a cap of half the tiles, each frame runs at most
    half (the target's tile always), the tiles left waiting run on the next frames, and once
    the picture holds still every map is what running all tiles gives."""
    img = frames(1)[0] * 0.5
    img[10:14, 10:14] = 1.0  # a target: the stand-in's map reaches ~0.8 in the top-left tile
    n_tiles = count_tiles(img)
    cap = -(-n_tiles // 2)
    fn, memory = Counting(), TileMemory(levels=4, max_frames=10, hot=0.6, max_tiles=cap)
    tiled(fn, img, TILE, OVERLAP, memory)
    assert fn.tiles == n_tiles  # a new stream runs every tile, whatever the cap
    brighter = np.clip(img * 1.1 + 4 / 255, 0, 1)  # every tile moves by more than 4 levels
    runs = []
    for _ in range(3):
        before = fn.tiles
        out = tiled(fn, brighter, TILE, OVERLAP, memory)
        runs.append(fn.tiles - before)
    # the target's tile and cap - 1 others a frame, until all the others have run
    assert runs == [cap, cap, 1 + (n_tiles - 1) - 2 * (cap - 1)], runs
    np.testing.assert_array_equal(out, tiled(Counting(), brighter, TILE, OVERLAP))


def test_a_tile_the_target_moved_into_runs_before_tiles_that_only_flickered():
    """Under the cap, of the tiles due the one whose pixels changed most goes first: a target
    that came in, not a gain flicker."""
    img = frames(1)[0]
    n_tiles = count_tiles(img)
    assert n_tiles > 4
    fn, memory = Counting(), TileMemory(levels=4, max_frames=10, max_tiles=1)
    tiled(fn, img, TILE, OVERLAP, memory)
    flicker = np.clip(img + 5 / 255, 0, 1)
    flicker[-14:-10, -14:-10] = 1.0  # a bright target comes into the bottom-right tile
    before = fn.tiles
    out = tiled(fn, flicker, TILE, OVERLAP, memory)
    assert fn.tiles - before == 1
    np.testing.assert_array_equal(out[-40:, -40:], tiled(Counting(), flicker, TILE, OVERLAP)[-40:, -40:])


def count_tiles(img) -> int:
    fn = Counting()
    tiled(fn, img, TILE, OVERLAP)
    return fn.tiles
