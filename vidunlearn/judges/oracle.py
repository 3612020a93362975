"""The benchmark world's deterministic oracle (:mod:`vidunlearn.judge`) as a judge."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OracleJudge:
    name: str = "oracle"
    attributes: tuple[str, ...] = ("colour", "shape", "motion")

    def judge(self, clip: np.ndarray) -> dict[str, str]:
        from ..judge import judge_clip

        verdict = judge_clip(clip)
        return {a: verdict.get(a) for a in self.attributes}


def load() -> OracleJudge:
    return OracleJudge()
