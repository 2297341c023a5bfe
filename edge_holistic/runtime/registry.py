"""Model registry: the manifest is the whitelist of model files.

Models are keyed by (role, variant, precision). A user (CLI flag, MQTT command,
config) only ever names a variant or precision; the file path always comes from
the manifest, and the file's sha256 is verified before an interpreter sees it.

Two places hold models. The bundled ones are package data (``edge_holistic.models``,
read-only in site-packages). User-added ones (the ~27 MB heavy pose model) live in a
writable models directory with its own ``manifest.yaml`` of the same format:
``$EDGE_HOLISTIC_MODELS_DIR``, else ``$XDG_DATA_HOME/edge-holistic/models``; the
systemd unit sets ``/var/lib/edge-holistic/models``. The registry merges both; a user
entry with the same (role, variant, precision) as a bundled one replaces it.
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
    # The folder holding ``file`` (set by the registry, never read from a manifest).
    directory: str = field(default="", hash=False, compare=False)

    @property
    def label(self) -> str:
        """The name published in messages, e.g. ``pose_landmark_full@float16``."""
        return self.name


USER_MANIFEST = "manifest.yaml"


def bundled_models_dir() -> Path:
    """The models shipped inside the package (``edge_holistic.models``).

    In git they sit in the repo's ``models/`` folder; setup.py maps that folder into the
    package, so wheel, ``pip install .`` and editable installs resolve it the same way.
    """
    from importlib.resources import files

    return Path(str(files("edge_holistic.models")))


def default_models_dir() -> Path:
    """``$EDGE_HOLISTIC_MODELS`` (a full replacement set, for development) or the bundled models."""
    env = os.environ.get("EDGE_HOLISTIC_MODELS")
    if env:
        return Path(env)
    return bundled_models_dir()


def user_models_dir() -> Path:
    """Writable folder for user-added models: ``$EDGE_HOLISTIC_MODELS_DIR`` or ``$XDG_DATA_HOME/edge-holistic/models``."""
    env = os.environ.get("EDGE_HOLISTIC_MODELS_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "edge-holistic" / "models"


def read_manifest(path: Path, directory: Path) -> List["ModelSpec"]:
    """The entries of one manifest file, each bound to ``directory``; ModelError names the file and entry."""
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ModelError(f"model manifest {path} is not valid YAML: {e}") from e
    except OSError as e:
        raise ModelError(f"model manifest {path} cannot be read: {e}") from e
    if doc is not None and not isinstance(doc, dict):
        raise ModelError(f"model manifest {path}: expected a mapping with a 'models' list")
    known = {f for f in ModelSpec.__dataclass_fields__} - {"directory", "extra"}
    out = []
    for i, entry in enumerate((doc or {}).get("models") or []):
        if not isinstance(entry, dict):
            raise ModelError(f"{path}: models[{i}] is not a mapping")
        try:
            extra = {k: v for k, v in entry.items() if k not in known}
            spec = ModelSpec(**{k: v for k, v in entry.items() if k in known}, extra=extra, directory=str(directory))
        except TypeError as e:
            raise ModelError(f"{path}: models[{i}] is malformed: {e}") from e
        if not isinstance(spec.file, str) or Path(spec.file).name != spec.file or spec.file in ("", ".", ".."):
            raise ModelError(f"{path}: models[{i}].file must be a plain file name in {directory}, got {spec.file!r}")
        out.append(spec)
    return out


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

    def __init__(self, models_dir: Optional[Path] = None, manifest: str = "manifest.yaml",
                 user_dir: Optional[Path] = None, use_user_dir: bool = True) -> None:
        """``models_dir``: the bundled set (default: package data); ``user_dir``: the writable
        set merged over it (default :func:`user_models_dir`; its manifest is optional)."""
        self.models_dir = Path(models_dir) if models_dir else default_models_dir()
        path = self.models_dir / manifest
        if not path.is_file():
            raise ModelError(f"model manifest not found: {path}")
        self.specs: Dict[Tuple[str, str, str], ModelSpec] = {}
        for spec in read_manifest(path, self.models_dir):
            self.specs[(spec.role, str(spec.variant), spec.precision)] = spec
        self.user_dir: Optional[Path] = (Path(user_dir) if user_dir else user_models_dir()) if use_user_dir else None
        if self.user_dir is not None and (self.user_dir / USER_MANIFEST).is_file():
            for spec in read_manifest(self.user_dir / USER_MANIFEST, self.user_dir):
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
        """Where this registry keeps the model ``spec`` names (a spec from another registry, e.g. a
        copy of the models folder, is looked up here by its key, not by the folder it came from)."""
        own = self.specs.get((spec.role, str(spec.variant), spec.precision), spec)
        return Path(own.directory or self.models_dir) / own.file

    def is_user(self, spec: ModelSpec) -> bool:
        """True for a model from the user models directory (not bundled)."""
        return self.user_dir is not None and Path(spec.directory or self.models_dir) == self.user_dir

    def verify(self, spec: ModelSpec) -> Path:
        """Check existence and sha256 once per process; raise ModelError naming the file."""
        path = self.path(spec)
        with self._lock:
            if self._verified.get(str(path)) == spec.sha256:
                return path
        if not path.is_file():
            raise ModelError(f"model file missing: {path} (manifest entry {spec.name}, expected sha256 {spec.sha256})")
        actual = sha256_file(path)
        if actual != spec.sha256:
            raise ModelError(
                f"model file altered: {path} has sha256 {actual}, manifest expects {spec.sha256} ({spec.name})"
            )
        with self._lock:
            self._verified[str(path)] = spec.sha256
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


def add_user_model(src: Path, role: str, variant: str, precision: str = "float16",
                   user_dir: Optional[Path] = None, origin: str = "", registry: Optional[Registry] = None) -> ModelSpec:
    """Copy a model file into the user models directory and add it to that folder's manifest.

    The file must be a loadable model with the same input shape and output shapes as a
    model already known for ``role`` (so the pipeline code can drive it unchanged), e.g.
    MediaPipe's pose_landmark_heavy.tflite next to lite/full. Written atomically
    (temporary file + rename) so a running daemon never sees half a file or manifest.
    """
    import shutil
    import tempfile

    src = Path(src)
    if role not in ROLES:
        raise ModelError(f"unknown model role {role!r}; valid: {', '.join(ROLES)}")
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if not str(variant) or not str(variant).replace("_", "").replace("-", "").isalnum():
        raise ModelError(f"variant {variant!r} must be letters, digits, '-' or '_'")
    if not src.is_file():
        raise ModelError(f"{src}: no such file")
    reg = registry or Registry()
    refs = [s for (r, _v, _p), s in reg.specs.items() if r == role]
    if not refs:
        raise ModelError(f"no installed {role} model to compare {src} with")
    try:
        new = TfliteModel(str(src), num_threads=1, name=src.name)
    except Exception as e:  # the runtime's message says what is wrong with the file
        raise ModelError(f"{src} does not load as a model: {e}") from e
    ref = reg.open(refs[0], num_threads=1)
    if new.input_shape != ref.input_shape or sorted(new.output_shapes) != sorted(ref.output_shapes):
        raise ModelError(f"{src} is not a {role} model: input {new.input_shape}, outputs {sorted(new.output_shapes)}; "
                         f"{refs[0].name} has input {ref.input_shape}, outputs {sorted(ref.output_shapes)}")
    directory = Path(user_dir) if user_dir else (reg.user_dir or user_models_dir())
    directory.mkdir(parents=True, exist_ok=True)
    suffix = "" if precision == "float16" else f"_{precision}"
    fname = f"{role}_{variant}{suffix}.tflite"
    name = f"{role}_{variant}@{precision}"
    fd, tmp = tempfile.mkstemp(prefix=".adding-", dir=directory)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        digest = sha256_file(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / fname)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    entry = {"name": name, "role": role, "variant": str(variant), "precision": precision, "file": fname,
             "sha256": digest, "size": (directory / fname).stat().st_size,
             "input": dict(refs[0].input), "origin": origin or f"user-added from {src.name}",
             "license": refs[0].license}
    manifest = directory / USER_MANIFEST
    doc = yaml.safe_load(manifest.read_text()) if manifest.is_file() else None
    doc = doc if isinstance(doc, dict) else {}
    models = [e for e in (doc.get("models") or []) if isinstance(e, dict)
              and (e.get("role"), str(e.get("variant")), e.get("precision")) != (role, str(variant), precision)]
    models.append(entry)
    text = ("# User-added models (edge-holistic models add); merged with the bundled manifest.\n"
            + yaml.safe_dump({"schema": 1, "models": models}, sort_keys=False, width=120))
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, manifest)
    return read_manifest(manifest, directory)[-1]
