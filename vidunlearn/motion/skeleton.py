"""The motion world's skeleton: HumanML3D's 22 joints (the SMPL body without hands) and a small
forward kinematics that turns limb angles into joint positions.

Conventions follow MoMask / HumanML3D (``EricGuo5513/momask-codes``, ``utils/paramUtil.py``:
``t2m_kinematic_chain``; ``utils/motion_process.py``: feet ``[7, 10]`` / ``[8, 11]``, facing
joints ``[2, 1, 17, 16]``): metres, y up, the floor at y = 0, the body first facing +z, so its
left is +x; 20 frames a second. Bone lengths are rough adult SMPL proportions (1.7 m tall), not
HumanML3D's reference skeleton, which cannot be downloaded here.

A :class:`Pose` holds per-frame angles (radians) in the body's own frame: legs and arms swing in
the sagittal plane (flexion, forward positive) and arms also sideways (abduction); the trunk leans
forward; the root has a heading (yaw, left turn positive), a floor position and a lift. :func:`
forward_kinematics` places the lowest foot joint on the floor in every frame, then adds the lift
(flight of a jump, bounce of a run), so ground contact needs no solver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
JOINTS = len(JOINT_NAMES)  # 22
# MoMask utils/paramUtil.py, t2m_kinematic_chain: right leg, left leg, spine to head, right arm, left arm.
KINEMATIC_CHAIN: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21), (9, 13, 16, 18, 20),
)
BONES: tuple[tuple[int, int], ...] = tuple((c[i], c[i + 1]) for c in KINEMATIC_CHAIN for i in range(len(c) - 1))
FEET = (7, 10, 8, 11)                  # left ankle, left toe, right ankle, right toe
FACE_JOINTS = (2, 1, 17, 16)           # right hip, left hip, right shoulder, left shoulder
SIDES = ("left", "right")
# Per side (left, right): joint indices.
HIP, KNEE, ANKLE, TOE = (1, 2), (4, 5), (7, 8), (10, 11)
COLLAR, SHOULDER, ELBOW, WRIST = (13, 14), (16, 17), (18, 19), (20, 21)

# Bone lengths and offsets, metres.
THIGH, SHIN, FOOT = 0.40, 0.42, 0.14
UPPER_ARM, FOREARM = 0.27, 0.25
HIP_OFFSET = (0.08, -0.09, 0.0)        # from the pelvis; x times +1 (left) or -1 (right)
SPINE = ((0.0, 0.11, -0.01), (0.0, 0.13, 0.0), (0.0, 0.06, 0.01), (0.0, 0.21, -0.01), (0.0, 0.10, 0.03))
COLLAR_OFFSET = (0.075, 0.115, -0.01)  # from spine3
SHOULDER_OFFSET = (0.11, 0.03, 0.0)    # from the collar
FOOT_PITCH = np.radians(70.0)          # the toe points forward, 20 degrees below the shin's normal


@dataclass
class Pose:
    """Per-frame angles of one motion (F frames), radians. Arrays of shape (F, 2) hold
    (left, right). ``forearm_*`` are absolute directions, like ``arm_*``: an elbow bent by e
    in the swing plane is ``forearm_flex = arm_flex + e``."""

    hip_flex: np.ndarray      # (F, 2) thigh forward from hanging straight down
    knee_flex: np.ndarray     # (F, 2) shin backward from the thigh's line
    ankle: np.ndarray         # (F, 2) toe down (+) or up (-) from neutral
    arm_flex: np.ndarray      # (F, 2) upper arm forward from hanging down
    arm_abduct: np.ndarray    # (F, 2) upper arm sideways (outward) from hanging down
    forearm_flex: np.ndarray  # (F, 2)
    forearm_abduct: np.ndarray  # (F, 2)
    lean: np.ndarray          # (F,) trunk forward about the pelvis
    yaw: np.ndarray           # (F,) heading; 0 faces +z, positive turns left (towards +x)
    root_xz: np.ndarray       # (F, 2) pelvis position on the floor (x, z), before anchoring
    lift: np.ndarray          # (F,) height of the lowest foot joint above the floor
    anchor: int | None = None  # keep this side's ankle (0 left, 1 right, 2 both) fixed on the floor

    @classmethod
    def standing(cls, frames: int) -> "Pose":
        """A relaxed standing pose: arms hanging slightly away from the body, elbows soft."""
        two = np.zeros((frames, 2))
        arm_abduct = two + np.radians(8.0)
        return cls(hip_flex=two.copy(), knee_flex=two + np.radians(3.0), ankle=two.copy(),
                   arm_flex=two.copy(), arm_abduct=arm_abduct, forearm_flex=two + np.radians(12.0),
                   forearm_abduct=arm_abduct.copy(), lean=np.zeros(frames), yaw=np.zeros(frames),
                   root_xz=np.zeros((frames, 2)), lift=np.zeros(frames))


def _sagittal(angle: np.ndarray) -> np.ndarray:
    """Unit vectors (F, 3) hanging down, turned forward by ``angle`` (F,) in the y-z plane."""
    return np.stack([np.zeros_like(angle), -np.cos(angle), np.sin(angle)], axis=-1)


def _arm_direction(flex: np.ndarray, abduct: np.ndarray, side: float) -> np.ndarray:
    """Unit vectors (F, 3): hanging down, turned forward by ``flex`` then outward by ``abduct``
    (outward is +x on the left side, -x on the right)."""
    return np.stack([side * np.cos(flex) * np.sin(abduct), -np.cos(flex) * np.cos(abduct), np.sin(flex)], axis=-1)


def _lean(points: np.ndarray, lean: np.ndarray) -> np.ndarray:
    """Rotate (F, ..., 3) offsets forward about the x axis by ``lean`` (F,): up goes to +z."""
    c = np.cos(lean).reshape((-1,) + (1,) * (points.ndim - 2))
    s = np.sin(lean).reshape(c.shape)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([x, y * c - z * s, y * s + z * c], axis=-1)


def forward_kinematics(pose: Pose) -> np.ndarray:
    """Joint positions (F, 22, 3), metres, y up, the lowest foot joint ``pose.lift`` above y = 0."""
    frames = len(pose.yaw)
    body = np.zeros((frames, JOINTS, 3))
    for i, side in enumerate((1.0, -1.0)):
        hip = np.array(HIP_OFFSET) * (side, 1.0, 1.0)
        body[:, HIP[i]] = hip
        body[:, KNEE[i]] = hip + THIGH * _sagittal(pose.hip_flex[:, i])
        shin = pose.hip_flex[:, i] - pose.knee_flex[:, i]
        body[:, ANKLE[i]] = body[:, KNEE[i]] + SHIN * _sagittal(shin)
        body[:, TOE[i]] = body[:, ANKLE[i]] + FOOT * _sagittal(shin + FOOT_PITCH - pose.ankle[:, i])

    # Trunk, head and arms: offsets from the pelvis, then leaned forward about it.
    upper = np.zeros((frames, JOINTS, 3))
    position = np.zeros(3)
    for joint, offset in zip((3, 6, 9, 12, 15), SPINE):
        position = position + offset
        upper[:, joint] = position
    for i, side in enumerate((1.0, -1.0)):
        collar = upper[0, 9] + np.array(COLLAR_OFFSET) * (side, 1.0, 1.0)
        shoulder = collar + np.array(SHOULDER_OFFSET) * (side, 1.0, 1.0)
        upper[:, COLLAR[i]] = collar
        upper[:, SHOULDER[i]] = shoulder
        upper[:, ELBOW[i]] = shoulder + UPPER_ARM * _arm_direction(pose.arm_flex[:, i], pose.arm_abduct[:, i], side)
        upper[:, WRIST[i]] = upper[:, ELBOW[i]] + FOREARM * _arm_direction(
            pose.forearm_flex[:, i], pose.forearm_abduct[:, i], side)
    lower = {0, *HIP, *KNEE, *ANKLE, *TOE}
    trunk = [j for j in range(JOINTS) if j not in lower]
    body[:, trunk] = _lean(upper[:, trunk], pose.lean)

    # Feet on the floor, anchored feet kept in place, then heading and floor position.
    body[..., 1] -= body[:, list(FEET), 1].min(axis=1, keepdims=True)
    body[..., 1] += pose.lift[:, None]
    if pose.anchor is not None:
        ankles = body[:, list(ANKLE), :][:, [0, 1] if pose.anchor == 2 else [pose.anchor]].mean(axis=1)
        body[..., [0, 2]] -= (ankles - ankles[:1])[:, None, [0, 2]]
    c, s = np.cos(pose.yaw)[:, None], np.sin(pose.yaw)[:, None]
    x, z = body[..., 0], body[..., 2]
    world = body.copy()
    world[..., 0] = x * c + z * s + pose.root_xz[:, None, 0]
    world[..., 2] = -x * s + z * c + pose.root_xz[:, None, 1]
    return world


def facing(motion: np.ndarray) -> np.ndarray:
    """Unit forward direction on the floor per frame, (F, 3), from the hips and shoulders as
    HumanML3D computes it: across = (right hip - left hip) + (right shoulder - left shoulder);
    forward = up x across."""
    r_hip, l_hip, r_shoulder, l_shoulder = FACE_JOINTS
    across = motion[:, r_hip] - motion[:, l_hip] + motion[:, r_shoulder] - motion[:, l_shoulder]
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    forward[:, 1] = 0.0
    norm = np.linalg.norm(forward, axis=-1, keepdims=True)
    return forward / np.maximum(norm, 1e-9)


def bone_lengths(motion: np.ndarray) -> np.ndarray:
    """Length of every bone of :data:`BONES` per frame, (F, 21)."""
    parents, children = zip(*BONES)
    return np.linalg.norm(motion[:, list(children)] - motion[:, list(parents)], axis=-1)
