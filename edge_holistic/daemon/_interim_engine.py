"""TEMPORARY: the Engine's live-mode surface over today's Pipeline, until branch `engine` lands.

Synchronous (submit runs the frame on the caller); removed when the daemon switches to
pipeline.engine.Engine.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional


@dataclass
class _Counters:
    submitted: int = 0
    completed: int = 0
    dropped: int = 0


class InterimEngine:
    def __init__(self, options, result_callback: Callable[[Any, Any], None], registry=None, pool=None) -> None:
        from ..pipeline import Pipeline

        self.pipe = Pipeline(options, registry=registry, pool=pool)
        self.registry, self.pool = self.pipe.registry, self.pipe.pool
        self.result_callback = result_callback
        self.counters = _Counters()

    @property
    def effective_options(self):
        return self.pipe.effective_options

    @property
    def models(self):
        return self.pipe.models

    def update(self, **changes):
        return self.pipe.update(**changes)

    def submit(self, rgb, timestamp, meta: Optional[Any] = None, block: bool = False) -> bool:
        self.counters.submitted += 1
        try:
            result = self.pipe.process(rgb, timestamp)
        except Exception as e:  # noqa: BLE001
            self.result_callback(e, meta)
            return True
        self.counters.completed += 1
        self.result_callback(result, meta)
        return True

    def flush(self, timeout=None) -> bool:
        return True

    def close(self) -> None:
        self.pipe.close()


def options_from(cfg, wanted) -> Any:
    from ..pipeline import PipelineOptions

    p = cfg.pipeline
    o = PipelineOptions(task=p.task, pose_model=p.pose_model, hand_model=p.hand_model, precision=p.precision,
                        threads=p.threads, static_image_mode=False, smooth=p.smooth,
                        min_detection_confidence=p.min_detection_confidence,
                        min_tracking_confidence=p.min_tracking_confidence)
    return replace(o, **(wanted or {}))
