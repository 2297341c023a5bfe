"""The ``edge-holistic/landmarks@1`` message: a contract other programs read.

Field names are fixed by the schema in ``schema/landmarks@1.json``; change them
only with a new schema version.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from .pipeline.types import FrameResult, HandResult

SCHEMA_ID = "edge-holistic/landmarks@1"
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "landmarks@1.json"
_DECIMALS = 5  # 1e-5 of the frame: far below a pixel on any camera, keeps messages small


def _rows(a: np.ndarray) -> list:
    return np.round(a.astype(np.float64), _DECIMALS).tolist()


def _hand(h: Optional[HandResult]) -> Optional[dict]:
    if h is None:
        return None
    return {"score": round(float(h.score), 4), "landmarks": _rows(h.landmarks), "world": _rows(h.world)}


def build_message(result: FrameResult, source: str, seq: int, ts: float) -> Dict[str, Any]:
    """One JSON-ready dict per frame; parts a task did not compute (or did not find) are null."""
    pose = None
    if result.pose is not None:
        pose = {
            "score": round(float(result.pose.score), 4),
            "landmarks": _rows(result.pose.landmarks),
            "world": _rows(result.pose.world),
        }
    face = None
    if result.face is not None:
        face = {"score": round(float(result.face.score), 4), "landmarks": _rows(result.face.landmarks)}
    return {
        "schema": SCHEMA_ID,
        "source": str(source),
        "frame": {"width": int(result.width), "height": int(result.height), "seq": int(seq), "ts": float(ts)},
        "models": dict(result.models),
        "pose": pose,
        "face": face,
        "left_hand": _hand(result.left_hand),
        "right_hand": _hand(result.right_hand),
        "latency_ms": {k: round(float(v), 3) for k, v in result.latency_ms.items()},
    }


def dumps(msg: Dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"), allow_nan=False)


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())
