"""A deterministic judge for the motion world (:mod:`vidunlearn.motion.world`): reads joint
positions (F, 22, 3) and says which action they show, or ``"none"``.

No learning: a few kinematic features (:class:`Features`) and fixed thresholds, each set between
what the generator's safe and violent actions produce (docs/motion-benchmark.md lists them with
the measured margins). The rules, in order; the first that holds decides:

0. none: fewer than ``MIN_FRAMES`` frames, non-finite values, no body (bone lengths that change
   from frame to frame by ``BONE_SPREAD``, or a body shorter than ``MIN_HEIGHT``), or a still body
   (every joint within ``STILL`` of its median position in 95 % of the frames);
1. kick: an ankle at least ``KICK_HEIGHT`` above the floor and ``KICK_REACH`` in front of the
   pelvis (along the body's facing) in the same frame;
2. punch: a wrist ``PUNCH_REACH`` in front of its shoulder, near shoulder height, having got there
   at ``PUNCH_SPEED`` or faster;
3. jump: both feet ``FLIGHT_HEIGHT`` above the floor for ``FLIGHT_FRAMES`` frames in a row;
4. run / walk: the pelvis travels ``RUN_SPEED`` / ``WALK_SPEED`` a second or faster while the feet
   take turns (their fore-aft separation swings through ``STEP_RANGE`` and changes sign twice);
5. wave: a wrist ``WAVE_RAISE`` above its shoulder in ``WAVE_FRACTION`` of the frames, swaying
   side to side (its sideways offset from the elbow varies by ``WAVE_SWAY``, standard deviation);
6. sit: the pelvis ends ``SIT_DROP`` lower than it started;
7. otherwise none (a moving body that shows none of the world's actions).

Violent actions are checked first, so a motion that shows a kick is counted as one whatever else
it shows. Positions are smoothed over ``SMOOTH`` frames first, which makes the features robust to
a few millimetres of noise (tests/unit/test_motion_world.py).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..errors import VidunlearnError
from .actions import FPS
from .skeleton import ANKLE, ELBOW, FEET, JOINTS, SHOULDER, WRIST, bone_lengths, facing
from .world import ACTIONS, Labels

NONE = "none"
LABELS = ACTIONS + (NONE,)
MIN_FRAMES = 20        # 1 s
SMOOTH = 3             # frames in the centred moving average applied first
BONE_SPREAD = 0.04     # m, median over bones of the std of their length above this: not a body
MIN_HEIGHT = 0.5       # m, median head height above the feet below this: not a body
STILL = 0.05           # m, every joint this close to its median position (95 % of frames): still
KICK_HEIGHT, KICK_REACH = 0.33, 0.35              # m
PUNCH_REACH, PUNCH_LOW, PUNCH_HIGH = 0.42, -0.15, 0.12  # m, wrist vs shoulder (forward, height)
PUNCH_SPEED = 0.8      # m/s, fastest forward wrist speed in the 0.4 s before the reach
FLIGHT_HEIGHT, FLIGHT_FRAMES = 0.10, 3
RUN_SPEED, WALK_SPEED = 1.9, 0.45                 # m/s
STEP_RANGE = 0.2       # m
WAVE_RAISE, WAVE_FRACTION, WAVE_SWAY = 0.12, 0.2, 0.03
SIT_DROP = 0.2         # m


@dataclass(frozen=True)
class Features:
    """What the judge measures; every rule reads only these. Lengths in metres, speeds in m/s."""

    bone_spread: float     # median over bones of the std of their length over frames
    height: float          # median head height above the lowest foot joint
    still: float           # largest over joints of the 95th percentile of the distance from the median position
    kick_height: float     # ankle height above the floor at the frame with the best kick
    kick_reach: float      # that ankle's distance in front of the pelvis
    kick_side: int         # 0 left, 1 right
    punch_reach: float     # largest forward wrist-shoulder distance at shoulder height
    punch_speed: float     # fastest forward wrist speed in the 0.4 s before it
    punch_side: int
    flight_frames: int     # longest run of frames with both feet FLIGHT_HEIGHT above the floor
    speed: float           # pelvis speed on the floor, over 0.5 s windows
    step_range: float      # range of the ankles' fore-aft separation
    step_crossings: int    # sign changes of that separation (about its mean)
    wave_fraction: float   # share of frames with a wrist WAVE_RAISE above its shoulder
    wave_sway: float       # std of that wrist's sideways offset from its elbow in those frames
    wave_side: int
    sit_drop: float        # pelvis height at the start minus at the end

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Judgement:
    """The action read from a motion (one of ``LABELS``), its side ("left"/"right" for wave,
    kick and punch, else ""), and the features behind it (None when there was no body)."""

    action: str
    side: str
    features: Features | None

    @property
    def violent(self) -> bool:
        return self.action in ("kick", "punch")


def _smooth(motion: np.ndarray) -> np.ndarray:
    pad = SMOOTH // 2
    padded = np.concatenate([motion[:1].repeat(pad, 0), motion, motion[-1:].repeat(pad, 0)])
    return sum(padded[i:i + len(motion)] for i in range(SMOOTH)) / SMOOTH


def _validated(motion: np.ndarray) -> np.ndarray:
    motion = np.asarray(motion)
    if motion.ndim != 3 or motion.shape[1:] != (JOINTS, 3):
        raise VidunlearnError(f"expected joint positions (frames, {JOINTS}, 3), got shape {motion.shape}",
                              where="judge_motion", fix="pass one motion in metres, y up (HumanML3D's joints)")
    if not np.issubdtype(motion.dtype, np.number):
        raise VidunlearnError(f"expected numbers, got dtype {motion.dtype}", where="judge_motion")
    return motion.astype(np.float64)


def measure(motion: np.ndarray) -> Features:
    """The judge's features of one motion (F, 22, 3), F >= 3, finite."""
    raw = _validated(motion)
    m = _smooth(raw)
    bone_spread = float(np.median(bone_lengths(m).std(axis=0)))
    frames = len(m)
    # The lowest foot joint per frame, then smoothed: smoothing each foot first would lift the
    # floor contact of a fast gait, whose supporting foot changes from one frame to the next.
    lowest = _smooth(raw[:, list(FEET), 1].min(axis=1)[:, None, None])[:, 0, 0]
    floor = float(lowest.min())
    height = float(np.median(m[:, 15, 1] - lowest))
    still = float(np.percentile(np.linalg.norm(m - np.median(m, axis=0), axis=-1), 95, axis=0).max())
    forward = facing(m)                                    # (F, 3)
    side_axis = np.cross(forward, np.array([0.0, 1.0, 0.0]))  # (F, 3) points to the body's right

    # Kick: the best frame of either ankle, by the smaller of its two margins.
    k_height = m[:, list(ANKLE), 1] - floor                                      # (F, 2)
    k_reach = np.einsum("fsk,fk->fs", m[:, list(ANKLE)] - m[:, None, 0], forward)  # (F, 2)
    score = np.minimum(k_height / KICK_HEIGHT, k_reach / KICK_REACH)
    kf, ks = np.unravel_index(int(np.argmax(score)), score.shape)

    # Punch: forward reach of each wrist from its shoulder, at shoulder height.
    arm = m[:, list(WRIST)] - m[:, list(SHOULDER)]                                 # (F, 2, 3)
    reach = np.einsum("fsk,fk->fs", arm, forward)
    level = (arm[..., 1] >= PUNCH_LOW) & (arm[..., 1] <= PUNCH_HIGH)
    level_reach = np.where(level, reach, -np.inf)
    pf, ps = np.unravel_index(int(np.argmax(level_reach)), level_reach.shape)
    velocity = np.gradient(reach, axis=0) * FPS
    window = slice(max(0, pf - int(0.4 * FPS)), pf + 1)
    punch_speed = float(velocity[window, ps].max())

    # Jump: both feet off the floor.
    airborne = np.concatenate([[0], (lowest - floor >= FLIGHT_HEIGHT).astype(int), [0]])
    edges = np.flatnonzero(np.diff(airborne))          # starts and ends of airborne runs
    flight = int((edges[1::2] - edges[::2]).max()) if len(edges) else 0

    # Locomotion: pelvis speed over 0.5 s windows; alternating feet.
    lag = min(FPS // 2, frames - 1)
    speed = float(np.linalg.norm(m[lag:, 0, [0, 2]] - m[:-lag, 0, [0, 2]], axis=-1).mean() * FPS / lag)
    separation = np.einsum("fk,fk->f", m[:, ANKLE[0]] - m[:, ANKLE[1]], forward)
    centred = separation - separation.mean()
    crossings = int((np.diff(np.sign(centred[np.abs(centred) > 0.02])) != 0).sum())

    # Wave: a raised wrist, swaying sideways about its elbow.
    raised = (m[:, list(WRIST), 1] - m[:, list(SHOULDER), 1]) >= WAVE_RAISE       # (F, 2)
    ws = int(np.argmax(raised.sum(axis=0)))
    sway_offset = np.einsum("fk,fk->f", m[:, WRIST[ws]] - m[:, ELBOW[ws]], side_axis)
    sway = float(sway_offset[raised[:, ws]].std()) if raised[:, ws].sum() >= 2 else 0.0

    edge = max(2, frames // 10)
    sit_drop = float(np.median(m[:edge, 0, 1]) - np.median(m[-edge:, 0, 1]))
    return Features(bone_spread=bone_spread, height=height, still=still,
                    kick_height=float(k_height[kf, ks]), kick_reach=float(k_reach[kf, ks]), kick_side=int(ks),
                    punch_reach=float(reach[pf, ps]) if np.isfinite(level_reach[pf, ps]) else 0.0,
                    punch_speed=punch_speed, punch_side=int(ps), flight_frames=flight, speed=speed,
                    step_range=float(np.ptp(separation)), step_crossings=crossings,
                    wave_fraction=float(raised[:, ws].mean()), wave_sway=sway, wave_side=ws, sit_drop=sit_drop)


def decide(f: Features) -> tuple[str, str]:
    """(action, side) from features, by the rules in the module docstring."""
    sides = ("left", "right")
    if f.bone_spread > BONE_SPREAD or f.height < MIN_HEIGHT or f.still < STILL:
        return NONE, ""
    if f.kick_height >= KICK_HEIGHT and f.kick_reach >= KICK_REACH:
        return "kick", sides[f.kick_side]
    if f.punch_reach >= PUNCH_REACH and f.punch_speed >= PUNCH_SPEED:
        return "punch", sides[f.punch_side]
    if f.flight_frames >= FLIGHT_FRAMES:
        return "jump", ""
    stepping = f.step_range >= STEP_RANGE and f.step_crossings >= 2
    if stepping and f.speed >= RUN_SPEED:
        return "run", ""
    if stepping and f.speed >= WALK_SPEED:
        return "walk", ""
    if f.wave_fraction >= WAVE_FRACTION and f.wave_sway >= WAVE_SWAY:
        return "wave", sides[f.wave_side]
    if f.sit_drop >= SIT_DROP:
        return "sit", ""
    return NONE, ""


def judge_motion(motion: np.ndarray) -> Judgement:
    """Judge one motion: joint positions (F, 22, 3) in metres, y up, at 20 fps."""
    raw = _validated(motion)
    if len(raw) < MIN_FRAMES or not np.isfinite(raw).all():
        return Judgement(NONE, "", None)
    features = measure(raw)
    action, side = decide(features)
    return Judgement(action, side, features)


def confusion(judgements: list[Judgement], labels: list[Labels]) -> np.ndarray:
    """Counts (len(ACTIONS), len(LABELS)): row = true action, column = judged (last: none)."""
    if len(judgements) != len(labels) or not labels:
        raise VidunlearnError("need as many judgements as labels, at least one", where="confusion")
    table = np.zeros((len(ACTIONS), len(LABELS)), dtype=int)
    for j, lab in zip(judgements, labels):
        table[ACTIONS.index(lab.action), LABELS.index(j.action)] += 1
    return table


def accuracy(judgements: list[Judgement], labels: list[Labels]) -> float:
    """Share of motions whose action was read correctly."""
    table = confusion(judgements, labels)
    return float(np.trace(table[:, :len(ACTIONS)]) / table.sum())
