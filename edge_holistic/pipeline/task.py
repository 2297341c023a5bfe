"""Transitional: the old per-frame ``Pipeline`` API, now a thin front of :class:`Engine`.

Kept only while ``edge_holistic/daemon.py`` still calls ``Pipeline.process``; the daemon
package (issue 9) drives ``Engine.submit`` directly, and this file goes with daemon.py.
New code uses :mod:`edge_holistic.pipeline.engine`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from ..runtime.pool import ModelPool
from ..runtime.registry import Registry
from .engine import Engine, EngineOptions, RunningMode
from .types import FrameResult


@dataclass(frozen=True)
class PipelineOptions:
    task: str = "pose"
    pose_model: str = "full"
    hand_model: str = "full"
    precision: str = "float"
    threads: object = 2
    static_image_mode: bool = False
    smooth: bool = True
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    parallel: bool = True


class Pipeline:
    """``process(frame, timestamp)`` per frame, on an image- or video-mode Engine."""

    def __init__(self, options: PipelineOptions = PipelineOptions(), registry: Optional[Registry] = None,
                 pool: Optional[ModelPool] = None) -> None:
        o = options
        self.engine = Engine(EngineOptions(
            running_mode=RunningMode.IMAGE if o.static_image_mode else RunningMode.VIDEO, task=o.task,
            pose_model=o.pose_model, hand_model=o.hand_model, precision=o.precision, threads=o.threads,
            smooth=o.smooth, min_detection_confidence=o.min_detection_confidence,
            min_tracking_confidence=o.min_tracking_confidence,
            schedule="auto" if o.parallel else "sequential"), registry=registry, pool=pool)
        self.registry, self.pool = self.engine.registry, self.engine.pool

    @property
    def options(self) -> EngineOptions:
        return self.engine.options

    @property
    def effective_options(self) -> EngineOptions:
        return self.engine.effective_options

    @property
    def models(self) -> Dict[str, str]:
        return self.engine.models

    def update(self, **changes) -> EngineOptions:
        return self.engine.update(**changes)

    def process(self, image: np.ndarray, timestamp: Optional[float] = None) -> FrameResult:
        if self.engine.running_mode is RunningMode.IMAGE:
            return self.engine.detect(image)
        return self.engine.detect_for_video(image, timestamp)

    def close(self) -> None:
        self.engine.close()
