"""Model registry: the manifest is the whitelist of model files.

Models are keyed by (role, variant, precision). A user (CLI flag, MQTT command,
config) only ever names a variant or precision; the file path always comes from
the manifest, and the file's sha256 is verified before an interpreter sees it.
"""
from __future__ import annotations

import hashlib
import os
import platform
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from .interpreter import TfliteModel

# pose_landmark_only: a pose_landmark variant with the unused segmentation head pruned
# (scripts/prune_models.py); same landmark outputs, about a third less arithmetic.
ROLES = ("pose_detector", "pose_landmark", "pose_landmark_only", "face_detector", "face_landmark", "hand_recrop",
         "hand_landmark")
PRECISIONS = ("float16", "int8")
PRECISION_CHOICES = ("float", "float16", "int8", "auto")


class ModelError(RuntimeError):
    """A model cannot be used: unknown name, missing file, or checksum mismatch."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    role: str
    variant: str
    precision: str
    file: str
    sha256: str
    size: int = 0
    input: dict = field(default_factory=dict, hash=False, compare=False)
    origin: str = ""
    license: str = ""
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        """The name published in messages, e.g. ``pose_landmark_full@float16``."""
        return self.name


def default_models_dir() -> Path:
    """``$EDGE_HOLISTIC_MODELS`` or the repo/install ``models/`` next to the package."""
    env = os.environ.get("EDGE_HOLISTIC_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "models"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_precision(precision: str, machine: Optional[str] = None) -> str:
    """Map a user precision to a manifest precision.

    ``auto`` picks int8 on ARM, where XNNPACK's int8 kernels beat float, and
    float16 (computed in float32) on x86. On x86 int8 pays only on CPUs with VNNI
    (measured 2x on an AVX512-VNNI EPYC, no gain on AVX2 alone), and float keeps the
    closest agreement with MediaPipe, so x86 users opt in with ``precision: int8``.
    """
    p = (precision or "auto").lower()
    if p in ("float", "float16", "float32"):
        return "float16"
    if p == "int8":
        return "int8"
    if p == "auto":
        m = (machine or platform.machine()).lower()
        return "int8" if m.startswith(("aarch64", "arm")) else "float16"
    raise ModelError(f"unknown precision {precision!r}; valid: {', '.join(PRECISION_CHOICES)}")


def auto_threads(cores: Optional[int] = None) -> int:
    """Interpreter threads for ``threads: auto``.

    Leave one core for capture, decoding and MQTT once there are 4 or more
    (a Pi 4/5 gets 3), use every core below that, and cap at 4: XNNPACK gains
    little past 4 threads on these small models.
    """
    n = cores or os.cpu_count() or 1
    return max(1, min(4, n - 1 if n >= 4 else n))


class Registry:
    """Reads the manifest; verifies and opens model files by (role, variant, precision)."""

    def __init__(self, models_dir: Optional[Path] = None, manifest: str = "manifest.yaml") -> None:
        self.models_dir = Path(models_dir) if models_dir else default_models_dir()
        path = self.models_dir / manifest
        if not path.is_file():
            raise ModelError(f"model manifest not found: {path}")
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ModelError(f"model manifest {path} is not valid YAML: {e}") from e
        self.specs: Dict[Tuple[str, str, str], ModelSpec] = {}
        known = {f for f in ModelSpec.__dataclass_fields__}
        for i, entry in enumerate((doc or {}).get("models") or []):
            try:
                extra = {k: v for k, v in entry.items() if k not in known}
                spec = ModelSpec(**{k: v for k, v in entry.items() if k in known}, extra=extra)
            except TypeError as e:
                raise ModelError(f"{path}: models[{i}] is malformed: {e}") from e
            self.specs[(spec.role, str(spec.variant), spec.precision)] = spec
        self._verified: Dict[str, str] = {}
        self._lock = threading.Lock()

    # -- lookup -------------------------------------------------------------------------
    def variants(self, role: str, precision: Optional[str] = None) -> List[str]:
        return sorted({v for (r, v, p) in self.specs if r == role and (precision is None or p == precision)})

    def precisions(self, role: str, variant: str) -> List[str]:
        return sorted({p for (r, v, p) in self.specs if r == role and v == variant})

    def spec(self, role: str, variant: str = "default", precision: str = "float16") -> ModelSpec:
        """The manifest entry, or a ModelError listing what is valid."""
        if role not in ROLES:
            raise ModelError(f"unknown model role {role!r}; valid: {', '.join(ROLES)}")
        key = (role, str(variant), precision)
        if key in self.specs:
            return self.specs[key]
        valid_v = self.variants(role)
        if str(variant) not in valid_v:
            raise ModelError(f"unknown {role} variant {variant!r}; valid: {', '.join(valid_v) or 'none'}")
        raise ModelError(
            f"no {precision} build of {role} {variant!r}; available precisions: "
            f"{', '.join(self.precisions(role, str(variant)))}"
        )

    def path(self, spec: ModelSpec) -> Path:
        return self.models_dir / spec.file

    def verify(self, spec: ModelSpec) -> Path:
        """Check existence and sha256 once per process; raise ModelError naming the file."""
        path = self.path(spec)
        with self._lock:
            if self._verified.get(spec.file) == spec.sha256:
                return path
        if not path.is_file():
            raise ModelError(f"model file missing: {path} (manifest entry {spec.name}, expected sha256 {spec.sha256})")
        actual = sha256_file(path)
        if actual != spec.sha256:
            raise ModelError(
                f"model file altered: {path} has sha256 {actual}, manifest expects {spec.sha256} ({spec.name})"
            )
        with self._lock:
            self._verified[spec.file] = spec.sha256
        return path

    def open(self, spec: ModelSpec, num_threads: int = 2) -> TfliteModel:
        """A new interpreter for the verified file (callers own it; never shared across threads)."""
        return TfliteModel(str(self.verify(spec)), num_threads=num_threads, name=spec.name)

    def verify_all(self) -> List[Tuple[ModelSpec, Optional[str]]]:
        """(spec, error or None) for every manifest entry."""
        out = []
        for spec in self.specs.values():
            try:
                self.verify(spec)
                out.append((spec, None))
            except ModelError as e:
                out.append((spec, str(e)))
        return out
