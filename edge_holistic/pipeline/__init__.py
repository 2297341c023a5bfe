"""detect -> landmarks -> ROI tracking -> smoothing."""
from .task import HAND_VARIANTS, POSE_VARIANTS, TASKS, Pipeline, PipelineOptions
from .types import FaceResult, FrameResult, HandResult, PoseResult

__all__ = [
    "FaceResult", "FrameResult", "HAND_VARIANTS", "HandResult", "POSE_VARIANTS", "Pipeline",
    "PipelineOptions", "PoseResult", "TASKS",
]
