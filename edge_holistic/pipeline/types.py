"""Results of one frame, as plain arrays. Messages are built from these in ``message``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np


@dataclass
class PoseResult:
    score: float
    landmarks: np.ndarray  # (33, 5): x, y (normalised by W, H), z (x's scale), visibility, presence
    world: np.ndarray  # (33, 3) metres, origin at hip centre


@dataclass
class FaceResult:
    score: float
    landmarks: np.ndarray  # (468, 3)


@dataclass
class HandResult:
    score: float
    landmarks: np.ndarray  # (21, 3)
    world: np.ndarray  # (21, 3) metres


@dataclass
class FrameResult:
    width: int
    height: int
    pose: Optional[PoseResult] = None
    face: Optional[FaceResult] = None
    left_hand: Optional[HandResult] = None  # the person's left
    right_hand: Optional[HandResult] = None
    models: Dict[str, str] = field(default_factory=dict)  # part -> "pose_landmark_full@float16"
    latency_ms: Dict[str, float] = field(default_factory=dict)  # "total" + one per stage
    # The timestamp (s) the engine tracked and smoothed this frame with: the A/B shadow runs its
    # candidate on exactly the same ones (its smoothing is as sensitive to them as the primary's).
    timestamp: Optional[float] = None

    @property
    def person(self) -> bool:
        return self.pose is not None
