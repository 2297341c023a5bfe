"""detect -> landmarks -> ROI tracking -> smoothing, behind one engine with running modes."""
from .engine import Engine, EngineCounters, EngineModeError, EngineOptions, RunningMode
from .settings import HAND_VARIANTS, POSE_VARIANTS, SETTINGS, TASKS
from .types import FaceResult, FrameResult, HandResult, PoseResult

__all__ = [
    "Engine", "EngineCounters", "EngineModeError", "EngineOptions", "FaceResult", "FrameResult", "HAND_VARIANTS",
    "HandResult", "POSE_VARIANTS", "PoseResult", "RunningMode", "SETTINGS", "TASKS",
]
