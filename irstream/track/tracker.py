"""Detections in, tracks out: one constant-velocity Kalman filter per target, Mahalanobis-gated
Hungarian association, M-of-N confirmation and coasting.

Coordinates are image pixels (x = column, y = row, as in `Detections.centroid_xy`) and time is
seconds taken from the frame timestamps, so velocities are px/s and a dropped frame only means a
longer prediction step.  Every rule is stated in seconds and counted in the frames that the
tracker actually sees in that time (the median interval between its recent frames): a live run
that keeps up with 6 of a camera's 25 frames/s coasts, confirms and waits as long as a file run
that sees all 25.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import chi2

from irstream.clock import FrameClock
from irstream.track import kalman
from irstream.track.clutter import ClutterMap
from irstream.track.motion import GlobalMotion, MotionConfig
from irstream.types import COASTING, CONFIRMED, LOST, TENTATIVE, Detections, Tracks

#: Peak scores are clipped to [SCORE_EPS, 1 - SCORE_EPS] before their logit, so a saturated
#: 1.0 from the model adds a large but finite amount of evidence.
SCORE_EPS = 1e-4


@dataclass(frozen=True)
class TrackerConfig:
    """How detections become tracks.  The defaults are the values `irstream run` uses, chosen on
    real footage leaving one sequence out (docs/unseen-footage.md); a pipeline TOML overrides them.

    meas_noise_px: standard deviation of a detection centroid about the true target position,
        px (R = meas_noise_px^2 * I).  Raising it makes tracks smoother and the gate wider, so
        they ride over centroid jitter; it also makes them slower to follow a real turn and more
        willing to take a nearby clutter detection.

    accel_noise_px_s2: standard deviation of the white-noise acceleration that the
        constant-velocity model allows, px/s^2.  Raising it lets tracks follow manoeuvres and
        apparent motion from camera shake; it also makes the velocity noisier and the gate wider,
        so crossing targets swap more easily.

    init_velocity_std_px_s: prior standard deviation of a new track's velocity, px/s (one
        centroid says nothing about velocity, so a track is born at rest with this doubt).
        Raising it lets fast targets be picked up on their second frame; it also widens the
        young track's gate, so clutter near a new track is more likely to confirm it.

    gate_prob: probability that a true detection falls inside a track's gate, from which the
        squared Mahalanobis threshold is the chi-square (2 dof) quantile (0.999 -> 13.8, i.e.
        about 3.7 sigma).  Raising it drops fewer true matches when the filter is overconfident;
        it also lets more clutter into the gate.  Must be in (0, 1).

    max_gate_px_s: largest Euclidean distance between a track's predicted position and a
        detection it may be matched to, whatever the covariance says, as a speed: px per second
        of the interval between the frames the tracker sees (375: 15 px at 25 frames/s, 60 px
        at 6 frames/s, where an unknown velocity carries a target 4 times as far).  It caps the
        gate of new and long-coasting tracks, whose covariance is large.  Raising it
        re-acquires fast or long-lost targets; it also lets a track jump to a different target
        nearby.

    confirm_hits, confirm_window_s: a track is confirmed once it has confirm_hits (M) detections
        within the frames of its first confirm_window_s s (N: 5 at 25 frames/s) and enough
        evidence (confirm_llr_nats), and is deleted as soon as it can no longer reach M within
        N, or once N frames pass without the evidence.  Where the window holds fewer than M
        frames (a slow live run: 2 frames at 6 frames/s) M is that number, but never below 2
        (unless confirm_hits is 1): one frame is no evidence of a target.  Raising M (or
        lowering the window) suppresses one-off false alarms better; it also delays every real
        track and loses targets that flicker.

    score_weight, hit_llr_nats, miss_llr_nats, confirm_llr_nats, max_llr_nats: the track score,
        a log-likelihood ratio (target against clutter) summed over the track's frames, nats.
        A frame with a matched detection of peak score p adds
        hit_llr_nats + score_weight * logit(p); a frame without one adds miss_llr_nats (< 0).
        A tentative track is confirmed once the sum reaches confirm_llr_nats (a sequential
        test); the sum is capped at max_llr_nats so an old track's credit is bounded.
        Persistence alone confirms static clutter as readily as a target; the score tells
        clutter that the detector is unsure of, and that flickers, from a target it is sure of.
        Raising confirm_llr_nats (or lowering score_weight or hit_llr_nats, or making
        miss_llr_nats more negative) confirms fewer clutter tracks; it also confirms dim or
        flickering targets later or never.

    clutter_cell_px, clutter_time_constant_s, clutter_floor, clutter_max_penalty_nats: the
        clutter map (irstream.track.clutter): the scene in cells of clutter_cell_px px, each learning
        how many detections per frame no confirmed track explains, with memory
        clutter_time_constant_s s.  A detection that would start or feed a tentative track in a
        cell of rate r gets log(r / clutter_floor) nats less (at most clutter_max_penalty_nats);
        clutter_floor is the rate of clean sky, false detections per cell per frame.  Confirmed
        tracks are never charged.  clutter_cell_px = 0 turns the map off.  A longer memory or a
        lower floor suppresses recurring clutter harder; it also delays a target that hovers,
        unconfirmed, where clutter was.

    motion_gain_nats, motion_ref_px: evidence for moving against the scene.  Each hit of a
        tentative track adds motion_gain_nats x min(1, d / motion_ref_px), d its travel
        against the scene since it started, px.  Clutter locked to the scene gains nothing; a
        target that hovers still confirms on its scores alone, only later.

    static_confirm_s: a tentative track that has not yet travelled motion_ref_px against
        the scene is not confirmed before it is this many seconds old, however sure its
        detections.  Towers, roofs and lit windows under a still camera score as high as a
        drone (on a real clip 0.32 of 0.33 false tracks per frame were such), but a fixed
        thing stays fixed: a hovering target is published this much later, a moving one is
        not delayed.  0 turns the wait off.

    static_max_structure: a track that has never travelled motion_ref_px against the scene is
        not published while the scene around it is structured: the mean `structure` of its
        detections (spread of a ring around each, [0, 1] image units; irstream.detect.targets)
        at or above this.  A building's corner, a lit window among others, a mast on a ridge
        never move under a still camera and are fixed clutter however long they stay; a drone
        that flew in has moved before it hovers there, and stays published.  A target that
        never moved in clear sky (a drone the camera holds still in the picture) is not
        affected.  1 turns this off (and with it the clear-sky condition of the large-track
        exemption below, which takes the same mean structure over the track's life).  On the 14 labelled sequences here (the 5 clips, DAUB) every
        published target moved at some time and no value from 0.05 to 1 changed a figure; 0.1
        is above the spread measured around drones in sky (0.02-0.12 with their own glow, the
        ring starting half a box length out) and below a building's edge against the sky.

    faint_contrast, faint_confirm_s: a tentative track none of whose detections stood
        faint_contrast (of the input range, [0, 1]; 0.14 is 36 grey levels of 8-bit video)
        above the ring around it (the detections' `contrast`) is not confirmed before it is
        faint_confirm_s s old.  On the real clips most false tracks are faint points on cloud
        that live a few frames (11-31 grey levels above their ring); the drones stand 60-180
        above theirs at some time, usually at once, so they are not delayed, and a faint target
        is published faint_confirm_s late, but not when it comes back to an id that was
        published (handover_s): over cloud a faint drone's track breaks and is reborn.  Chosen
        leaving one sequence out (docs/unseen-footage.md): on 18 real sequences the false tracks
        fell from 0.30 to 0.20 per frame with every Pd and first report as before.  Raising
        either suppresses more faint clutter; it also delays faint targets longer.
        faint_contrast = 0 turns this off.

    moving_window_s: a track is reported `moving` when it travelled motion_ref_px or more
        against the scene over the last moving_window_s s; a hovering target is not moving.

    static_clutter_shift_px, static_clutter_travel_ratio, static_clutter_max_area_px: a ground
        point under a panning camera.  Once the scene has moved static_clutter_shift_px px (path
        length, in the track's life) and the track has travelled less than
        static_clutter_travel_ratio of that against the scene, it is a fixed point carried by
        the pan and is not published (0 turns this off).  On DAUB's panning sequence the
        ground clutter travelled 0.06-0.10 of the scene's move against it, the aircraft
        0.23-0.40, hence 0.15.  Tracks whose box is static_clutter_max_area_px px^2 or more are
        exempt (0: none is) while the ring around them is clear (mean structure below
        static_max_structure): the scene's motion is read by phase correlation, which a large
        target over empty sky drives by itself, so such a target seems to go with the scene.  A
        building's corner on a tree line is as large, but in structure (0.43-0.47 on a reticle
        clip, where it was published for 167 frames while the camera stepped across it).
        A hovering target under a pan is indistinguishable from the ground by its motion and
        is dropped too, which is why the ratio is low; raising it drops slow targets,
        lowering it keeps clutter that wobbles.  One frame adds at most
        static_clutter_max_step_px px to the path: a camera that re-points (64-205 px in one
        frame in the replays of docs/unseen-footage.md) counts as one step of a pan, enough
        to start the rule.  Counted in full, one jump asked every target in view for
        static_clutter_travel_ratio of it in travel, and slow aircraft were unpublished for a
        second after each jump; not counted, fixed points that came through a jump were
        published.  A reticle clip's camera steps 13 px a frame, and those steps count in full.

    reacquire_gate_px_s: a confirmed or coasting track that finds nothing inside its statistical
        gate may still take the nearest detection left over this close to its prediction, as a
        speed like max_gate_px_s (375: 15 px at 25 frames/s); 0 turns this off.  Its covariance can be too sure of a velocity learnt
        in the frames after a camera jolt or a turn, which puts the target outside the gate
        while it is still a few px away; without this a second track starts on the target and
        the first coasts on, published, where nothing is.  Raising it keeps ids through wilder
        motion; it also lets a track that lost its target take a clutter detection nearby.

    reacquire_body_lengths: the same gate, widened for a large target to this many of its own
        lengths (the longer side of its last box), px/px; 0 keeps reacquire_gate_px_s for all.  A
        close drone 25 px long moves 40 px in a frame when a pan-tilt camera jerks after it,
        and such jerks came every few frames on a real clip; a 2-px target keeps the 15 px
        gate.  Raising it follows harder jerks; it also lets a large track take a detection
        of something else farther away.

    publish_coast_s: how long a confirmed track that misses its target is still published,
        at its predicted position (COASTING), s (at least one frame); after that it is LOST:
        kept, unpublished, so that its target can come back to it until max_coast_s.  A prediction published
        long after the last detection is mostly a position where nothing is (on the real clips
        a track that lost its drone coasted on for 10 frames, each a false alarm); raising it
        bridges longer gaps on screen.

    handover_s: a track confirmed when no other confirmed or coasting track is alive takes
        over the id of the established track (published before, lost inside the picture by
        misses) whose last hit is at most handover_s s old; of several, the one with
        the most hits.  0 turns this off.  A pan-tilt
        camera that re-points to keep its target in view moves it farther in one frame than
        any gate, often over sky that shows no motion, so the target comes back as a new
        track; with one target in view it is the same target.  Raising it keeps the id through
        longer gaps; it also gives the id of a target that left unseen to the next one to come.

    jump_min_area_px, jump_area_ratio: a close target under a pan-tilt camera that keeps it in
        view jumps 20-300 px between frames (the camera re-points, or the target crosses the
        picture faster than any gate), over sky that shows no motion.  When exactly one
        confirmed or coasting track of jump_min_area_px px^2 or more exists (or, with none,
        exactly one such lost track; tentative ones and smaller ones do not count), it matched
        nothing this frame, and exactly one unmatched detection of that size and of peak score
        >= min_start_score is left, the track takes that detection wherever it is, provided
        their areas are within a factor jump_area_ratio: one object of one size in view.  (A
        2-px track of clutter elsewhere used to block the jump: at a quarter of the frame rate
        clip 200805's drone then came back as a new track that waited, 81% published instead
        of 96%.)  Its filter restarts there.  Small targets are left out because a
        2-px blob's size says nothing (on a real clip such jumps went to a tower top); 0 turns
        this off.  Raising the ratio keeps targets that change size on screen; it also lets a
        lone track jump to clutter of another size.

    max_coast_s: how long a confirmed track is kept through consecutive misses, predicted only
        (COASTING, then LOST), s; the next miss deletes it.  0 deletes a track at its first
        miss.  Raising it carries ids through occlusions and missed detections; it
        also keeps ghosts of departed targets on screen longer and lets a coasting track grab an
        unrelated detection.

    min_start_score: smallest detection peak_score (0..1) that may start a new track; weaker
        detections can still feed existing tracks.  Raising it starts fewer tracks on clutter;
        it also misses dim targets until they brighten.
    """

    meas_noise_px: float = 1.0
    accel_noise_px_s2: float = 50.0
    init_velocity_std_px_s: float = 100.0
    gate_prob: float = 0.999
    max_gate_px_s: float = 375.0
    confirm_hits: int = 3
    confirm_window_s: float = 0.2
    score_weight: float = 1.0
    hit_llr_nats: float = 0.0
    miss_llr_nats: float = -1.0
    confirm_llr_nats: float = 3.0
    max_llr_nats: float = 10.0
    static_clutter_shift_px: float = 20.0
    static_clutter_travel_ratio: float = 0.15
    static_clutter_max_area_px: float = 25.0
    static_clutter_max_step_px: float = 20.0
    clutter_cell_px: float = 8.0
    clutter_time_constant_s: float = 4.0
    clutter_floor: float = 0.01
    clutter_max_penalty_nats: float = 6.0
    motion_gain_nats: float = 1.0
    motion_ref_px: float = 1.5
    static_confirm_s: float = 2.0
    static_max_structure: float = 0.1
    faint_contrast: float = 0.14
    faint_confirm_s: float = 1.2
    moving_window_s: float = 1.0
    reacquire_gate_px_s: float = 375.0
    reacquire_body_lengths: float = 2.0
    publish_coast_s: float = 0.08
    handover_s: float = 4.0
    jump_min_area_px: float = 25.0
    jump_area_ratio: float = 2.0
    max_coast_s: float = 0.4
    min_start_score: float = 0.5

    def __post_init__(self) -> None:
        positive = ("meas_noise_px", "accel_noise_px_s2", "init_velocity_std_px_s", "max_gate_px_s")
        for name in positive:
            _check(self, name, Real, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
        _check(self, "gate_prob", Real, lambda v: 0.0 < v < 1.0, "a probability in (0, 1)")
        _check(self, "min_start_score", Real, lambda v: 0.0 <= v <= 1.0, "a score in [0, 1]")
        _check(self, "confirm_hits", Integral, lambda v: v >= 1, "an integer >= 1")
        _check(self, "confirm_window_s", Real, lambda v: math.isfinite(v) and v > 0, "a finite number of seconds > 0")
        _check(self, "faint_contrast", Real, lambda v: 0 <= v <= 1, "a contrast in [0, 1]")
        for name in ("max_coast_s", "static_confirm_s", "publish_coast_s", "handover_s", "faint_confirm_s"):
            _check(self, name, Real, lambda v: math.isfinite(v) and v >= 0, "a finite number of seconds >= 0")
        _check(self, "score_weight", Real, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
        _check(self, "hit_llr_nats", Real, math.isfinite, "a finite number")
        _check(self, "miss_llr_nats", Real, lambda v: math.isfinite(v) and v <= 0, "a finite number <= 0")
        _check(self, "confirm_llr_nats", Real, math.isfinite, "a finite number")
        for name in ("static_clutter_shift_px", "static_clutter_max_area_px", "static_clutter_max_step_px", "clutter_cell_px",
                     "clutter_max_penalty_nats", "motion_gain_nats", "reacquire_gate_px_s", "reacquire_body_lengths"):
            _check(self, name, Real, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
        _check(self, "jump_min_area_px", Real, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
        _check(self, "jump_area_ratio", Real, lambda v: math.isfinite(v) and v >= 1, "a finite number >= 1")
        _check(self, "static_clutter_travel_ratio", Real, lambda v: 0 < v <= 1, "a share in (0, 1]")
        _check(self, "static_max_structure", Real, lambda v: 0 < v <= 1, "a spread in (0, 1]")
        for name in ("clutter_time_constant_s", "clutter_floor", "motion_ref_px", "moving_window_s"):
            _check(self, name, Real, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
        _check(self, "max_llr_nats", Real, lambda v: math.isfinite(v) and v >= self.confirm_llr_nats,
               f"a finite number >= confirm_llr_nats ({self.confirm_llr_nats!r})")

    @property
    def gate_mahalanobis2(self) -> float:
        """Squared Mahalanobis distance a match may have: chi-square quantile, 2 dof, at gate_prob."""
        return float(chi2.ppf(self.gate_prob, df=2))


def _check(cfg: TrackerConfig, name: str, kind: type, ok, what: str) -> None:
    value = getattr(cfg, name)
    # bool is an Integral; True as a frame count is a typo, not a setting.
    if isinstance(value, bool) or not isinstance(value, kind) or not ok(value):
        raise ValueError(f"TrackerConfig.{name}={value!r}: must be {what}")


# ---------------------------------------------------------------------------------------------
# Geometry: small pure functions.  The filter itself is in irstream.track.kalman.


def gated_cost(pred_xy: np.ndarray, innov_cov: np.ndarray, det_xy: np.ndarray,
               gate_d2: float, gate_px: float) -> np.ndarray:
    """Squared Mahalanobis distances, (T, D), with inf outside either gate.

    pred_xy: (T, 2) predicted track positions; innov_cov: (T, 2, 2) innovation covariances
    S = H P H^T + R; det_xy: (D, 2) detection centroids; all px.
    """
    dx = det_xy[None, :, 0] - pred_xy[:, 0, None]
    dy = det_xy[None, :, 1] - pred_xy[:, 1, None]
    # S^-1 written out for 2x2: at 200 x 200 pairs, batched inv + einsum cost several times more.
    a, b, c = innov_cov[:, 0, 0, None], innov_cov[:, 0, 1, None], innov_cov[:, 1, 1, None]
    d2 = (c * dx * dx - 2.0 * b * dx * dy + a * dy * dy) / (a * c - b * b)
    outside = (d2 > gate_d2) | (dx * dx + dy * dy > gate_px ** 2)
    return np.where(outside, np.inf, d2)


def assign(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one (rows, cols) pairs of least total cost among the finite entries of cost (T, D)."""
    finite = np.isfinite(cost)
    # Rows and columns with nothing inside the gate cannot pair; dropping them keeps the
    # solver's cubic cost down when most targets are far apart.
    rows_in, cols_in = np.flatnonzero(finite.any(1)), np.flatnonzero(finite.any(0))
    sub, ok = cost[np.ix_(rows_in, cols_in)], finite[np.ix_(rows_in, cols_in)]
    # A forbidden pair costs more than all allowed ones together, so the solver first makes as
    # many allowed pairs as it can, then the cheapest such set; forbidden ones are then dropped.
    big = 1.0 + sub[ok].sum()
    r, c = linear_sum_assignment(np.where(ok, sub, big))
    keep = ok[r, c]
    return rows_in[r[keep]], cols_in[c[keep]]


def _box_area(bbox_xyxy: np.ndarray):
    """px^2 of an inclusive-exclusive box (4,), or of each of several (N, 4)."""
    b = np.asarray(bbox_xyxy, dtype=np.float64)
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Track:
    id: int
    bbox: np.ndarray
    score: float
    state: int
    age: int = 1
    hits: int = 1
    misses: int = 0
    detection: int = -1
    llr: float = 0.0
    with_scene: bool = True  # moves with the scene (see update), as clutter and most targets do
    scene_travel_xy: np.ndarray = field(default_factory=lambda: np.zeros(2))  # against the scene, px
    scene_path_px: float = 0.0  # how far the scene moved in the track's life, px (path length)
    established: bool = False  # has been published as confirmed
    jumped: bool = False  # restarted this frame at a far detection (see Tracker._jump)
    last_hit_frame: int = 0
    moved: bool = False  # has travelled motion_ref_px against the scene at some time
    structure_sum: float = 0.0  # sum of its detections' structure (see TrackerConfig.static_max_structure)
    peak_contrast: float = 0.0  # the largest contrast of its detections (see TrackerConfig.faint_contrast)
    recent: list = field(default_factory=list)  # (t, scene_travel_xy) over the last moving_window_s


class Tracker:
    """Multi-target tracker for point-like targets: `update(detections, timestamp_s)` per frame.

    Each frame: every track is predicted to the frame's time; confirmed and coasting tracks are
    matched to detections first, tentative tracks then to what is left (an established track
    keeps its target when a newborn track sits closer to it); unmatched detections strong enough
    start tentative tracks.  Lifecycle (states from irstream.types):

        TENTATIVE --M hits within first N frames--> CONFIRMED <--hit-- COASTING
        TENTATIVE --cannot reach M within N--> deleted
        CONFIRMED --miss--> COASTING --misses beyond publish_coast_s--> LOST (unpublished)
        COASTING, LOST --hit--> CONFIRMED;  misses in a row beyond max_coast_s --> deleted

    Times are counted in frames at the rate the tracker sees (see `frames`).

    Ids come from a counter on the instance, start at 1 and are never reused until reset().
    """

    def __init__(self, cfg: TrackerConfig = TrackerConfig(), motion: MotionConfig = MotionConfig()) -> None:
        """motion: how the scene's motion is read from the frames given to `update` as `image`."""
        self.cfg, self.motion_cfg = cfg, motion
        self._gate_d2 = cfg.gate_mahalanobis2
        self._R = np.eye(2) * cfg.meas_noise_px ** 2
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and the clock; the next track id is 1 again."""
        self._tracks: list[_Track] = []
        # Filter state of self._tracks, row for row (see irstream.track.kalman).
        self._x, self._P = kalman.initial_state(np.zeros((0, 2)), 1.0, 1.0)
        self._next_id = 1
        self._rate = FrameClock()  # the rate at which rules stated in seconds are counted in frames
        self._clock_s = 0.0  # the sum of the steps taken: advances even where timestamps repeat
        self._frame = 0
        self._gone: list[_Track] = []  # established tracks lost by misses, for handover_s
        self._motion = GlobalMotion(self.motion_cfg)
        c = self.cfg
        self._clutter = ClutterMap(c.clutter_cell_px, c.clutter_time_constant_s, c.clutter_floor,
                                   c.clutter_max_penalty_nats) if c.clutter_cell_px > 0 else None

    def scene_shift(self, image: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
        """How far the scene moved since the previous frame given here, px (irstream.track.motion);
        ignore: pixels that are not the scene (burned-in text)."""
        return self._motion.estimate(image, ignore)

    def update(self, detections: Detections, timestamp_s: float, scene_shift_xy=None, image_shape=None,
               image: np.ndarray | None = None, ignore: np.ndarray | None = None) -> Tracks:
        """Advance to one frame and return every live track (tentative ones included).

        Call once per frame, in time order, on frames with no detections too (pass
        `Detections.empty()`): a frame without a match is how a track learns it was missed.
        timestamp_s is the frame's time, s; the step is the difference from the previous call,
        or the rate seen so far when that is not positive (irstream.clock).
        `Tracks.detection` gives, per track, the row of `detections` it was matched to, or -1.

        scene_shift_xy: how far the whole scene moved since the previous frame, px
        (irstream.track.motion).  A target may move with the scene or hold its place in the image (a
        camera that follows it), so each track is matched under both hypotheses and takes the
        closer; a missed track keeps the hypothesis it last matched under.

        image_shape: (H, W) of the frame, px; a track whose position leaves the picture is ended
        rather than published outside it.

        image: the frame as the detector saw it (`Detected.prepared.unit`); given instead of
        scene_shift_xy and image_shape, the tracker reads both from it, as `irstream run` does.
        ignore: with image, its pixels that are not the scene (burned-in text; see scene_shift).
        """
        if image is not None and scene_shift_xy is None:
            scene_shift_xy, image_shape = self.scene_shift(image, ignore), image_shape or image.shape[:2]
        dt = self._rate.tick(timestamp_s)
        self._clock_s += dt
        self._frame += 1
        F, Q = kalman.cv_model(dt, self.cfg.accel_noise_px_s2)
        shift = np.zeros(2) if scene_shift_xy is None else np.asarray(scene_shift_xy, np.float64)
        if self._clutter is not None:
            self._clutter.advance(dt, shift)
        before = self._x[:, :2].copy()
        self._x, self._P = kalman.predict(self._x, self._P, F, Q)
        for t in self._tracks:
            t.age += 1
            t.detection = -1
            t.jumped = False
        unmatched = self._associate(detections, shift)
        jumped = np.array([t.jumped for t in self._tracks], dtype=bool)
        self._x[[t.with_scene and not t.jumped for t in self._tracks], :2] += shift
        self._correct(detections)
        travel = self._x[:, :2] - before - shift
        travel[jumped] = 0.0  # a restart where the target was seen, not a move against the scene
        pan_step = min(float(np.hypot(*shift)), self.cfg.static_clutter_max_step_px)
        for t, moved in zip(self._tracks, travel):
            t.scene_travel_xy += moved
            t.scene_path_px += pan_step
            self._note_travel(t)
            if t.detection >= 0:
                self._hit(t, detections)
            else:
                self._miss(t)
            if t.state != TENTATIVE and self._static_clutter(t):
                t.state = TENTATIVE  # unpublished; _alive keeps it, so clutter does not restart
                t.established = False
        alive = [self._alive(t) for t in self._tracks]
        keep = alive
        if image_shape is not None:
            h, w = image_shape[:2]
            xy = self._reported_xy(detections)
            inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
            keep = [a and bool(i) for a, i in zip(alive, inside)]
        self._gone += [t for t, a in zip(self._tracks, alive) if not a and t.established]
        self._keep(keep)
        self._hand_over()
        self._start(detections, unmatched)
        self._learn_clutter(detections)
        return self._snapshot(detections)

    def _note_travel(self, t: _Track) -> None:
        """Keep the track's travel against the scene over the last moving_window_s."""
        if math.hypot(*t.scene_travel_xy) >= self.cfg.motion_ref_px:
            t.moved = True
        t.recent.append((self._clock_s, t.scene_travel_xy.copy()))
        # Keep one entry at or before the window's start, so the window is spanned.
        while len(t.recent) > 1 and t.recent[1][0] <= self._clock_s - self.cfg.moving_window_s:
            t.recent.pop(0)

    def _moving(self, t: _Track) -> bool:
        return bool(t.recent) and math.hypot(*(t.recent[-1][1] - t.recent[0][1])) >= self.cfg.motion_ref_px

    def frames(self, seconds: float) -> int:
        """A time as a number of frames at the rate this tracker sees (at least one frame for
        any time above zero)."""
        return self._rate.frames(seconds)

    def _confirm_rule(self) -> tuple[int, int]:
        """(M hits, N frames) of the confirmation window at the rate seen; see confirm_window_s."""
        m = self.cfg.confirm_hits
        n = max(self.frames(self.cfg.confirm_window_s), min(m, 2))
        return min(m, n), n

    def _hand_over(self) -> None:
        """Newly confirmed tracks become established; see TrackerConfig.handover_s."""
        window = self.frames(self.cfg.handover_s)
        self._gone = [t for t in self._gone if self._frame - t.last_hit_frame <= window]
        new = [t for t in self._tracks if t.state == CONFIRMED and not t.established]
        for t in new:
            t.established = True
        if len(new) != 1:
            return
        others = [t for t in self._tracks if t.state in (CONFIRMED, COASTING) and t is not new[0]]
        lost = self._recently_lost()
        if others or not lost:
            return
        # Short-lived tracks that were confirmed on clutter die too; the target's has the most hits.
        old = max(lost, key=lambda t: t.hits)
        new[0].id = old.id
        self._gone = [t for t in self._gone if t is not old]
        if any(t is old for t in self._tracks):
            self._keep([t is not old for t in self._tracks])

    def _recently_lost(self) -> list[_Track]:
        """Established tracks whose last hit is within handover_s: those held LOST, then those
        deleted by misses (_gone); none when handover_s is 0."""
        window = self.frames(self.cfg.handover_s)
        if not window:
            return []
        held = [t for t in self._tracks if t.state == LOST]
        return [t for t in held + self._gone if self._frame - t.last_hit_frame <= window]

    def _keep(self, keep: list[bool]) -> None:
        """Drop the tracks whose flag is False, with their rows of the filter state."""
        self._tracks = [t for t, k in zip(self._tracks, keep) if k]
        self._x, self._P = self._x[keep], self._P[keep]

    def _learn_clutter(self, det: Detections) -> None:
        """Detections that no established track explains feed the clutter map."""
        if self._clutter is None:
            return
        explained = {t.detection for t in self._tracks if t.state != TENTATIVE and t.detection >= 0}
        rows = [i for i in range(len(det)) if i not in explained]
        self._clutter.add(det.centroid_xy[rows])

    def _clutter_nats(self, xy: np.ndarray) -> np.ndarray:
        return np.zeros(len(xy)) if self._clutter is None else self._clutter.penalty_nats(xy)

    def _correct(self, det: Detections) -> None:
        """Kalman update of every matched track with its detection's centroid."""
        rows = np.array([i for i, t in enumerate(self._tracks) if t.detection >= 0], dtype=np.int64)
        if len(rows):
            z = det.centroid_xy[[self._tracks[i].detection for i in rows]]
            self._x[rows], self._P[rows] = kalman.update(self._x[rows], self._P[rows], z, self._R)

    def _associate(self, det: Detections, shift: np.ndarray) -> np.ndarray:
        """Sets track.detection (and track.with_scene) for matched tracks; returns the
        unmatched detection rows."""
        free = np.arange(len(det))
        tentative = np.array([t.state == TENTATIVE for t in self._tracks], dtype=bool)
        for rows in (np.flatnonzero(~tentative), np.flatnonzero(tentative)):
            innov = kalman.innovation_cov(self._P[rows], self._R)

            def mahalanobis(pred, xy, innov=innov):
                return gated_cost(pred, innov, xy, self._gate_d2, self.cfg.max_gate_px_s * self._rate.frame_s)

            free = self._match(rows, det, free, shift, mahalanobis)
        free = self._reacquire(det, shift, free, np.flatnonzero(~tentative))
        return self._jump(det, free)

    def _jump(self, det: Detections, free: np.ndarray) -> np.ndarray:
        """A lone track that lost its target takes a lone free detection of its size, anywhere
        (see TrackerConfig.jump_min_area_px); returns the rows left free."""
        c = self.cfg
        if not c.jump_min_area_px:
            return free
        # Only what is of a jumping target's size counts: a 2-px track or blob of clutter
        # elsewhere is no second object of its size.
        sized = [i for i, t in enumerate(self._tracks) if _box_area(t.bbox) >= c.jump_min_area_px]
        held = [i for i in sized if self._tracks[i].state in (CONFIRMED, COASTING)]
        held = held or [i for i in sized if self._tracks[i].state == LOST]
        if len(held) != 1 or self._tracks[held[0]].detection >= 0:
            return free
        sized_free = _box_area(det.bbox_xyxy[free]) >= c.jump_min_area_px
        strong = free[(det.peak_score[free] >= c.min_start_score) & sized_free]
        if len(strong) != 1:
            return free
        i, j = held[0], int(strong[0])
        small, large = sorted((_box_area(self._tracks[i].bbox), _box_area(det.bbox_xyxy[j])))
        if small < c.jump_min_area_px or large > c.jump_area_ratio * small:
            return free
        x, P = kalman.initial_state(det.centroid_xy[j:j + 1], c.meas_noise_px, c.init_velocity_std_px_s)
        self._x[i], self._P[i] = x[0], P[0]
        self._tracks[i].detection, self._tracks[i].jumped = j, True
        return free[free != j]

    def _reacquire(self, det: Detections, shift: np.ndarray, free: np.ndarray, established: np.ndarray) -> np.ndarray:
        """Established tracks that matched nothing take the nearest free detection within
        reacquire_gate_px_s (at the rate seen), or reacquire_body_lengths of their own length if
        more, of their prediction, by distance alone (see TrackerConfig)."""
        gate = self.cfg.reacquire_gate_px_s * self._rate.frame_s
        if not gate:
            return free
        rows = np.array([i for i in established if self._tracks[i].detection < 0], dtype=np.int64)
        sizes = np.array([max(self._tracks[i].bbox[2:] - self._tracks[i].bbox[:2]) for i in rows], dtype=np.float64)
        gates = np.maximum(gate, self.cfg.reacquire_body_lengths * sizes)[:, None]

        def distance(pred, xy):
            d = np.linalg.norm(xy[None] - pred[:, None], axis=2)
            return np.where(d <= gates, d, np.inf)

        return self._match(rows, det, free, shift, distance)

    def _match(self, rows: np.ndarray, det: Detections, free: np.ndarray, shift: np.ndarray, cost_of) -> np.ndarray:
        """Assign the tracks `rows` to the `free` detection rows by cost_of(predicted xy, detection
        xy), each track under the better of its two motion hypotheses (held in the image, or moved
        with the scene); sets track.detection and track.with_scene, returns the rows left free."""
        if not len(rows) or not len(free):
            return free
        pred, xy = self._x[rows, :2], det.centroid_xy[free]
        cost = cost_of(pred, xy)
        moved = bool(np.any(shift))
        if moved:
            cost_scene = cost_of(pred + shift, xy)
            with_scene = cost_scene < cost
            cost = np.minimum(cost, cost_scene)
        r, c = assign(cost)
        for i, j in zip(r, c):
            track = self._tracks[rows[i]]
            track.detection = int(free[j])
            if moved:
                track.with_scene = bool(with_scene[i, j])
        return np.delete(free, c)

    def _hit(self, t: _Track, det: Detections) -> None:
        i = t.detection
        t.hits += 1
        t.misses = 0
        t.last_hit_frame = self._frame
        t.score = float(det.peak_score[i])
        t.bbox = det.bbox_xyxy[i].copy()
        t.structure_sum += float(det.structure[i])
        t.peak_contrast = max(t.peak_contrast, float(det.contrast[i]))
        gain = self._hit_llr(t.score)
        if t.state == TENTATIVE:
            gain += self._motion_nats(t) - float(self._clutter_nats(det.centroid_xy[i:i + 1])[0])
        t.llr = min(t.llr + gain, self.cfg.max_llr_nats)
        # A tentative track still alive is within its window (see _alive), so M hits confirm it.
        if t.state in (COASTING, LOST) or (self._evidenced(t) and not self._static_clutter(t) and not self._waits(t)):
            t.state = CONFIRMED

    def _waits(self, t: _Track) -> bool:
        """Faint and younger than faint_confirm_s; or not yet moved against the scene, and
        younger than static_confirm_s or where the scene is structured (see TrackerConfig)."""
        if t.peak_contrast < self.cfg.faint_contrast and t.age < self.frames(self.cfg.faint_confirm_s) and not self._heir():
            return True
        if t.moved or math.hypot(*t.scene_travel_xy) >= self.cfg.motion_ref_px:
            return False
        return t.age < self.frames(self.cfg.static_confirm_s) or t.structure_sum / t.hits >= self.cfg.static_max_structure

    def _heir(self) -> bool:
        """A track confirmed now would take over a lost established track's id (_hand_over): the
        target that was published is back, not something new."""
        return (not any(t.state in (CONFIRMED, COASTING) for t in self._tracks)
                and bool(self._recently_lost()))

    def _evidenced(self, t: _Track) -> bool:
        return t.hits >= self._confirm_rule()[0] and t.llr >= self.cfg.confirm_llr_nats

    def _static_clutter(self, t: _Track) -> bool:
        """The scene moved far enough under the track, and the track went with it: a fixed
        point of the ground (a rock, a roof), not a target, which holds its place in the image
        of a camera that follows it or moves across the scene on its own."""
        limit, scene = self.cfg.static_clutter_shift_px, t.scene_path_px
        largest = self.cfg.static_clutter_max_area_px
        if largest and _box_area(t.bbox) >= largest and t.structure_sum / t.hits < self.cfg.static_max_structure:
            return False
        return (limit > 0 and scene >= limit
                and math.hypot(*t.scene_travel_xy) < self.cfg.static_clutter_travel_ratio * scene)

    def _motion_nats(self, t: _Track) -> float:
        travel = math.hypot(*t.scene_travel_xy)
        return self.cfg.motion_gain_nats * min(1.0, travel / self.cfg.motion_ref_px)

    def _hit_llr(self, score: float) -> float:
        p = min(max(score, SCORE_EPS), 1.0 - SCORE_EPS)
        return self.cfg.hit_llr_nats + self.cfg.score_weight * math.log(p / (1.0 - p))

    def _miss(self, t: _Track) -> None:
        t.misses += 1
        t.llr += self.cfg.miss_llr_nats
        if t.state != TENTATIVE:
            t.state = COASTING if t.misses <= self.frames(self.cfg.publish_coast_s) else LOST

    def _alive(self, t: _Track) -> bool:
        coast = self.frames(self.cfg.max_coast_s)
        if t.state == TENTATIVE:
            if self._evidenced(t):  # waits for scene travel, and lives as a confirmed one would
                return t.misses <= coast
            hits, window = self._confirm_rule()
            return t.age < window and t.hits + (window - t.age) >= hits
        return t.misses <= coast

    def _start(self, det: Detections, rows: np.ndarray) -> None:
        rows = rows[det.peak_score[rows] >= self.cfg.min_start_score]
        x, P = kalman.initial_state(det.centroid_xy[rows], self.cfg.meas_noise_px, self.cfg.init_velocity_std_px_s)
        self._x, self._P = np.concatenate([self._x, x]), np.concatenate([self._P, P])
        penalty = self._clutter_nats(det.centroid_xy[rows])
        for i, pen in zip(rows, penalty):
            score = float(det.peak_score[i])
            llr = min(self._hit_llr(score) - float(pen), self.cfg.max_llr_nats)
            track = _Track(self._next_id, det.bbox_xyxy[i].copy(), score, TENTATIVE, detection=int(i), llr=llr,
                           last_hit_frame=self._frame, structure_sum=float(det.structure[i]),
                           peak_contrast=float(det.contrast[i]),
                           recent=[(self._clock_s, np.zeros(2))])
            if self._evidenced(track) and not self._waits(track):
                track.state = CONFIRMED  # one hit is enough (confirm_hits 1) and nothing to wait for
            self._tracks.append(track)
            self._next_id += 1

    def _reported_xy(self, det: Detections) -> np.ndarray:
        """(T, 2) px.  A track that found its target this frame is reported where it was seen:
        the filter trusts its constant-velocity prediction, and its posterior lags a target that
        jinks in the image (camera shake) by 3-5 px, more than a 1-3 px target's own size; the
        filter still carries the velocity and gates the next frame.  Coasting tracks are
        reported at their prediction."""
        xy = self._x[:, :2].copy()
        hit = np.array([t.detection for t in self._tracks], dtype=np.int64)
        xy[hit >= 0] = det.centroid_xy[hit[hit >= 0]]
        return xy

    def _snapshot(self, det: Detections) -> Tracks:
        ts = self._tracks
        if not ts:
            return Tracks.empty()
        x = self._x
        xy = self._reported_xy(det)

        def ints(name: str) -> np.ndarray:
            return np.array([getattr(t, name) for t in ts], dtype=np.int64)

        return Tracks(
            track_id=ints("id"), state=ints("state"),
            centroid_xy=xy, velocity_xy=x[:, 2:].copy(),
            covariance_xy=self._P[:, :2, :2].copy(),
            bbox_xyxy=np.stack([t.bbox for t in ts]).astype(np.int64),
            age_frames=ints("age"), hits=ints("hits"), misses=ints("misses"),
            score=np.array([t.score for t in ts], dtype=np.float64), detection=ints("detection"),
            moving=np.array([self._moving(t) for t in ts], dtype=bool),
        )
