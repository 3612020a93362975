"""Joint positions <-> a per-frame feature vector in HumanML3D's layout, without joint rotations.

MoMask trains on HumanML3D's 263 numbers a frame (``utils/motion_process.py``, ``process_file``):
root yaw velocity (1), root velocity on the floor in the body's frame (2), root height (1),
joint positions relative to the root and turned to face +z ("ric", 21 x 3), joint rotations as
continuous 6-D (21 x 6), joint velocities in the body's frame (22 x 3) and foot contacts (4).
This module keeps every part except the rotations, which need an inverse-kinematics solver and
which ``recover_from_ric`` ignores anyway: 4 + 63 + 66 + 4 = ``FEATURE_DIM`` = 137 numbers a
frame, F - 1 rows for F frames (the last frame has no velocity), as in HumanML3D.

:func:`from_features` recovers positions from the root and "ric" parts the way MoMask's
``recover_from_ric`` does: the first frame at the origin, facing +z.
"""

from __future__ import annotations

import numpy as np

from ..errors import VidunlearnError
from .skeleton import FEET, JOINTS, facing

FEATURE_DIM = 4 + (JOINTS - 1) * 3 + JOINTS * 3 + 4  # 137
FOOT_CONTACT = 0.002  # HumanML3D's feet_thre: squared displacement a frame (m^2) below which a foot is planted
RIC = slice(4, 4 + (JOINTS - 1) * 3)


def _turn(points: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Turn (F, ..., 3) vectors about y by ``yaw`` (F,), the skeleton's convention: +z goes to
    (sin yaw, 0, cos yaw)."""
    c = np.cos(yaw).reshape((-1,) + (1,) * (points.ndim - 2))
    s = np.sin(yaw).reshape(c.shape)
    out = points.copy()
    out[..., 0] = points[..., 0] * c + points[..., 2] * s
    out[..., 2] = -points[..., 0] * s + points[..., 2] * c
    return out


def heading(motion: np.ndarray) -> np.ndarray:
    """Yaw per frame (F,), radians, of the body's facing (0 faces +z, positive towards +x)."""
    forward = facing(motion)
    return np.arctan2(forward[:, 0], forward[:, 2])


def to_features(motion: np.ndarray) -> np.ndarray:
    """Features (F - 1, 137), float32, of joint positions (F, 22, 3), F >= 2."""
    m = np.asarray(motion, dtype=np.float64)
    if m.ndim != 3 or m.shape[1:] != (JOINTS, 3) or len(m) < 2:
        raise VidunlearnError(f"expected joint positions (frames >= 2, {JOINTS}, 3), got shape {m.shape}",
                              where="to_features")
    yaw = heading(m)                                                    # (F,)
    root = m[:, 0]
    yaw_velocity = np.angle(np.exp(1j * np.diff(yaw)))                  # (F-1,) wrapped to (-pi, pi]
    step = _turn(np.diff(root, axis=0)[:, None], -yaw[:-1])[:, 0]       # (F-1, 3) in the body's frame
    local = m - root[:, None] * np.array([1.0, 0.0, 1.0])               # root on the floor at the origin
    ric = _turn(local, -yaw)[:, 1:]                                     # (F, 21, 3)
    velocity = _turn(np.diff(m, axis=0), -yaw[:-1])                     # (F-1, 22, 3)
    contact = (np.diff(m[:, list(FEET)], axis=0) ** 2).sum(-1) < FOOT_CONTACT  # (F-1, 4)
    parts = [yaw_velocity[:, None], step[:, [0, 2]], root[:-1, 1:2], ric[:-1].reshape(len(m) - 1, -1),
             velocity.reshape(len(m) - 1, -1), contact.astype(np.float64)]
    return np.concatenate(parts, axis=1).astype(np.float32)


def from_features(features: np.ndarray) -> np.ndarray:
    """Joint positions (F', 22, 3) from features (F', 137): the first frame's root at the origin
    on the floor plane, facing +z; later frames by integrating the root's yaw and velocity."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != FEATURE_DIM:
        raise VidunlearnError(f"expected features (frames, {FEATURE_DIM}), got shape {f.shape}", where="from_features")
    yaw = np.concatenate([[0.0], np.cumsum(f[:-1, 0])])                 # (F',)
    step = np.stack([f[:, 1], np.zeros(len(f)), f[:, 2]], axis=-1)     # (F', 3)
    world_step = _turn(step[:, None], yaw)[:, 0]
    root = np.concatenate([np.zeros((1, 3)), np.cumsum(world_step[:-1], axis=0)])
    root[:, 1] = f[:, 3]
    joints = _turn(f[:, RIC].reshape(len(f), JOINTS - 1, 3), yaw)
    joints[..., 0] += root[:, None, 0]
    joints[..., 2] += root[:, None, 2]
    return np.concatenate([root[:, None], joints], axis=1).astype(np.float32)
