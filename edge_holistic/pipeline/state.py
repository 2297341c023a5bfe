"""Tracking state between frames, apart from the models that produce it.

Why separate: a model switch (pose full -> lite, float -> int8, hand full -> lite) builds
new trackers around new interpreters, but the person has not moved. Keeping the ROIs and
filters in these small objects, which the engine owns and hands to whichever trackers
are current, lets a switch keep tracking (no new detection on the next frame) without
copying fields from old trackers to new ones. Counters live here too, so they count
over the whole stream, whatever models ran.

Each object is touched by one thread at a time: the pose state by the thread running the
pose, a part's state by that part's worker (see ``engine``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .geometry import Rect
from .smoothing import LandmarkSmoother


class PoseState:
    """The previous frame's pose ROI, the three one-euro filters, counters."""

    def __init__(self) -> None:
        self.prev_roi: Optional[Rect] = None
        # Filter parameters from MediaPipe's pose landmark smoothing (reference notes).
        self.lm_filter = LandmarkSmoother(min_cutoff=0.05, beta=80.0)
        self.world_filter = LandmarkSmoother(min_cutoff=0.1, beta=40.0, disable_value_scaling=True)
        self.aux_filter = LandmarkSmoother(min_cutoff=0.01, beta=10.0)
        self.detector_runs = 0
        self.last_roi: Optional[Rect] = None  # the ROI the landmark model ran on last (debugging, tests)

    def reset(self) -> None:
        """Forget the person: the next frame runs the detector, filters start afresh."""
        self.prev_roi = None
        self.lm_filter.reset()
        self.world_filter.reset()
        self.aux_filter.reset()

    def lost(self) -> None:
        # Filters fed by the image-size stream reset when the pose is lost; the
        # visibility and world filters only see landmark packets, so they keep state.
        self.prev_roi = None
        self.lm_filter.reset_coords()
        self.aux_filter.reset_coords()


class PartState:
    """Face or one hand: the previous landmarks and the ROI they give, counters.

    ``detector_runs`` counts the face detector (face) or the re-crop model (hands,
    also readable as ``recrop_runs``).
    """

    def __init__(self) -> None:
        self.prev_landmarks: Optional[np.ndarray] = None
        self.prev_roi: Optional[Rect] = None
        self.detector_runs = 0
        self.landmark_runs = 0
        self.tracked_frames = 0
        # Last frame's ROIs, for debugging and tests (None when the stage did not run).
        self.last_pose_roi: Optional[Rect] = None
        self.last_detection_roi: Optional[Rect] = None
        self.last_roi: Optional[Rect] = None

    @property
    def recrop_runs(self) -> int:
        return self.detector_runs

    @property
    def last_recrop_roi(self) -> Optional[Rect]:
        return self.last_detection_roi

    def reset(self) -> None:
        self.prev_landmarks = None
        self.prev_roi = None


@dataclass
class TrackingState:
    """Everything one stream carries from frame to frame."""

    pose: PoseState = field(default_factory=PoseState)
    face: PartState = field(default_factory=PartState)
    left_hand: PartState = field(default_factory=PartState)
    right_hand: PartState = field(default_factory=PartState)

    def reset(self) -> None:
        """As if the stream started again (counters keep counting)."""
        self.pose.reset()
        self.reset_parts()

    def reset_parts(self) -> None:
        for part in (self.face, self.left_hand, self.right_hand):
            part.reset()
