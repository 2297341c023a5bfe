"""Helpers for comparing our pipeline with MediaPipe's golden references (not a test module).

The golden files in ``tests/data/golden/`` are made by ``scripts/make_reference.py`` with
the real mediapipe 0.10.21 (format in ``tests/data/SOURCES.md``). Tests import this
module as ``import golden`` (pytest puts ``tests/`` on ``sys.path``).

Why a normalised error: a pixel error means nothing without the size of the thing
measured (5 px is excellent on a 400 px tall person, poor on a 40 px hand).
``median_distance_ratio`` divides the median pixel error by the diagonal of the
reference part's box, so one threshold works across images, people and parts; the
median keeps one wild landmark (an occluded wrist) from deciding a test.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
GOLDEN_DIR = DATA_DIR / "golden"
IMAGES_DIR = DATA_DIR / "images"
CLIP_PATH = DATA_DIR / "clip.avi"
CLIP_INFO_PATH = DATA_DIR / "clip.json"

PARTS: Tuple[str, ...] = ("pose", "face", "left_hand", "right_hand")
# Expected (rows, columns) of each part in a golden item.
SHAPES: Dict[str, Tuple[int, int]] = {
    "pose": (33, 4),  # x, y (normalised by W, H), z, visibility
    "pose_world": (33, 3),  # metres, origin at the hip centre
    "face": (468, 3),
    "left_hand": (21, 3),  # the person's left, as in our FrameResult
    "right_hand": (21, 3),
}


class GoldenFormatError(ValueError):
    """A golden file is missing or does not match the documented format."""


@dataclass(frozen=True)
class GoldenItem:
    """MediaPipe's output for one image or one clip frame; a part is None when not found."""

    width: int
    height: int
    pose: Optional[np.ndarray]
    pose_world: Optional[np.ndarray]
    face: Optional[np.ndarray]
    left_hand: Optional[np.ndarray]
    right_hand: Optional[np.ndarray]

    def part(self, name: str) -> Optional[np.ndarray]:
        if name not in SHAPES:
            raise KeyError(f"unknown part {name!r}; expected one of {sorted(SHAPES)}")
        return getattr(self, name)


@dataclass(frozen=True)
class Golden:
    """One golden file: the MediaPipe version and settings it was made with, and its items."""

    path: Path
    mediapipe: str
    solution: str
    settings: Dict[str, Any]
    input: Dict[str, Any]
    items: Dict[str, GoldenItem]  # image file name, or frame index as a decimal string

    def frame(self, index: int) -> GoldenItem:
        """Item of clip frame ``index`` (tracking-mode files are keyed "0", "1", ...)."""
        return self.items[str(index)]


def golden_path(name: str, directory: Path = GOLDEN_DIR) -> Path:
    """``name`` like "pose_full_static" -> the existing .json or .json.gz file."""
    stem = name[:-len(".json")] if name.endswith(".json") else name
    for candidate in (directory / f"{stem}.json", directory / f"{stem}.json.gz"):
        if candidate.is_file():
            return candidate
    raise GoldenFormatError(f"no golden file {stem}.json or {stem}.json.gz in {directory}")


def _part_array(value: Any, key: str, where: str) -> Optional[np.ndarray]:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != SHAPES[key]:
        raise GoldenFormatError(f"{where}: {key!r} has shape {arr.shape}, expected {SHAPES[key]}")
    return arr


def parse_item(raw: Dict[str, Any], where: str) -> GoldenItem:
    """Validate one raw JSON item; errors name the file, item and key."""
    missing = [k for k in ("width", "height", *SHAPES) if k not in raw]
    if missing:
        raise GoldenFormatError(f"{where}: missing key(s) {missing}")
    return GoldenItem(
        width=int(raw["width"]),
        height=int(raw["height"]),
        **{k: _part_array(raw[k], k, where) for k in SHAPES},
    )


def load_golden(name: str, directory: Path = GOLDEN_DIR) -> Golden:
    """Load and validate a golden file by stem (e.g. "holistic_full_tracking")."""
    path = golden_path(name, directory)
    raw_bytes = path.read_bytes()
    if path.suffix == ".gz":
        raw_bytes = gzip.decompress(raw_bytes)
    try:
        doc = json.loads(raw_bytes)
    except json.JSONDecodeError as e:
        raise GoldenFormatError(f"{path}: not valid JSON ({e})") from e
    for key in ("mediapipe", "solution", "settings", "items"):
        if key not in doc:
            raise GoldenFormatError(f"{path}: missing top-level key {key!r}")
    items = {k: parse_item(v, f"{path.name} item {k!r}") for k, v in doc["items"].items()}
    return Golden(path=path, mediapipe=doc["mediapipe"], solution=doc["solution"], settings=doc["settings"],
                  input=doc.get("input", {}), items=items)


def image_paths() -> List[Path]:
    """The committed stills, sorted by name (the keys of the static golden files)."""
    return sorted(p for p in IMAGES_DIR.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


@dataclass(frozen=True)
class ClipInfo:
    """Ground truth of the synthetic clip (from ``clip.json``, written by scripts/make_clip.py)."""

    frames: int
    width: int
    height: int
    person_visible: FrozenSet[int]  # >= 60% of the person box in view
    person_absent: FrozenSet[int]  # nothing of the source still in view


def _expand(ranges: Sequence[Sequence[int]]) -> FrozenSet[int]:
    return frozenset(i for a, b in ranges for i in range(int(a), int(b) + 1))


def load_clip_info(path: Path = CLIP_INFO_PATH) -> ClipInfo:
    doc = json.loads(Path(path).read_text())
    return ClipInfo(frames=int(doc["frames"]), width=int(doc["width"]), height=int(doc["height"]),
                    person_visible=_expand(doc["person_visible"]), person_absent=_expand(doc["person_absent"]))


def median_distance_ratio(ours_xy: np.ndarray, ref_xy: np.ndarray, visible_mask: Optional[np.ndarray],
                          width: int, height: int) -> float:
    """Median pixel distance over the masked landmarks / diagonal of the reference box.

    ``ours_xy`` and ``ref_xy`` are (N, >=2) arrays in normalised image coordinates (only
    x, y are used). ``visible_mask`` (N,) selects the landmarks to score; None means all.
    The box is taken over the *selected reference* landmarks: MediaPipe extrapolates
    off-screen or occluded points (legs below the frame), and those would inflate
    the box and make any error look small.
    """
    ours = np.asarray(ours_xy, dtype=np.float64)
    ref = np.asarray(ref_xy, dtype=np.float64)
    if ours.ndim != 2 or ref.ndim != 2 or ours.shape[1] < 2 or ours.shape[0] != ref.shape[0]:
        raise ValueError(f"ours_xy {ours.shape} and ref_xy {ref.shape} must both be (N, >=2) with the same N")
    mask = np.ones(len(ref), dtype=bool) if visible_mask is None else np.asarray(visible_mask, dtype=bool)
    if mask.shape != (len(ref),):
        raise ValueError(f"visible_mask has shape {mask.shape}, expected ({len(ref)},)")
    if not mask.any():
        raise ValueError("visible_mask selects no landmarks")
    scale = np.array([width, height], dtype=np.float64)
    ours_px = ours[mask, :2] * scale
    ref_px = ref[mask, :2] * scale
    diag = float(np.linalg.norm(ref_px.max(axis=0) - ref_px.min(axis=0)))
    if diag <= 0.0:
        raise ValueError("reference box of the selected landmarks has zero size")
    return float(np.median(np.linalg.norm(ours_px - ref_px, axis=1))) / diag


def pose_visible_mask(ref_pose: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Landmarks MediaPipe itself calls visible (visibility > threshold), from a (33, 4) golden pose."""
    return np.asarray(ref_pose)[:, 3] > threshold


def found_parts(result: Any) -> FrozenSet[str]:
    """Parts present in a GoldenItem or in our FrameResult (both use None for 'not found')."""
    return frozenset(p for p in PARTS if getattr(result, p, None) is not None)


def found_mismatches(ours: Iterable[str], ref: Iterable[str], parts: Sequence[str] = PARTS) -> Dict[str, str]:
    """part -> "ours only" / "reference only" for every part where found/not-found disagrees."""
    a, b = set(ours), set(ref)
    return {p: ("ours only" if p in a else "reference only") for p in parts if (p in a) != (p in b)}


def found_agreement(ours: Sequence[bool], ref: Sequence[bool]) -> float:
    """Fraction of frames whose found/not-found status agrees (e.g. pose over the clip)."""
    a = np.asarray(ours, dtype=bool)
    b = np.asarray(ref, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equal-length non-empty sequences, got {a.shape} and {b.shape}")
    return float((a == b).mean())
