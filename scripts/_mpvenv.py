"""A throwaway virtualenv holding the real ``mediapipe`` package, for reference runs.

Why a separate venv: MediaPipe is only the *yardstick* for this project (golden
landmarks, speed comparison). It pins ``numpy<2`` and pulls in opencv-contrib, which
would clash with the package's own environment (numpy 2.x, LiteRT), and it must
never become a run-time dependency. So scripts that need it (``make_reference.py``,
``bench_compare.py``) create or reuse a venv outside the repository and run a worker
script inside it as a subprocess, exchanging plain JSON.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
import json
from typing import Any, Dict, List, Optional, Sequence

MEDIAPIPE_VERSION = "0.10.21"
DEFAULT_VENV = Path("/work/venvs") / f"mp{MEDIAPIPE_VERSION}"
REPO_MODELS = Path(__file__).resolve().parents[1] / "models"

# Models the wheel does not ship but downloads at first use (from Google's model storage,
# which is unreachable offline). We place the repo's verified copy where the wheel looks,
# so complexity 0 runs offline on the same bytes our package uses. Values: sha256 from
# models/manifest.yaml. pose_landmark_heavy is not available offline (complexity 2 unsupported).
DOWNLOADED_MODELS = {
    "mediapipe/modules/pose_landmark/pose_landmark_lite.tflite":
        "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61",
}


class MediapipeVenvError(RuntimeError):
    """The reference venv could not be created or does not hold the expected MediaPipe."""


def venv_python(venv: Path) -> Path:
    """Path of the interpreter inside ``venv`` (POSIX layout; this project targets Linux)."""
    return Path(venv) / "bin" / "python"


def installed_mediapipe(venv: Path) -> Optional[str]:
    """Version of mediapipe importable in ``venv``, or None if the venv or package is missing."""
    py = venv_python(venv)
    if not py.exists():
        return None
    proc = subprocess.run(
        [str(py), "-c", "import mediapipe, sys; sys.stdout.write(mediapipe.__version__)"],
        capture_output=True, text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _site_packages(py: Path) -> Path:
    proc = subprocess.run([str(py), "-c", "import sysconfig, sys; sys.stdout.write(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True)
    return Path(proc.stdout.strip())


def provide_models(py: Path, models_dir: Path = REPO_MODELS) -> None:
    """Copy the models MediaPipe would download into the venv's mediapipe package (offline use).

    Checks the sha256 of the source so a wrong file fails here, naming it, rather than as
    a silently different golden reference later.
    """
    site = _site_packages(py)
    for rel, digest in DOWNLOADED_MODELS.items():
        dest = site / rel
        src = Path(models_dir) / Path(rel).name
        if dest.exists() and hashlib.sha256(dest.read_bytes()).hexdigest() == digest:
            continue
        if not src.exists():
            raise MediapipeVenvError(f"{src} is missing; needed for {rel} (MediaPipe cannot download it offline)")
        got = hashlib.sha256(src.read_bytes()).hexdigest()
        if got != digest:
            raise MediapipeVenvError(f"{src} has sha256 {got}, expected {digest}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)


def ensure_venv(
    venv: Path = DEFAULT_VENV,
    version: str = MEDIAPIPE_VERSION,
    base_python: Optional[str] = None,
    quiet: bool = False,
) -> Path:
    """Create (or reuse) ``venv`` with ``mediapipe==version``; return its python.

    Reuses the venv when it already imports the requested version, so repeated runs
    cost one import (~1 s) instead of a download. ``base_python`` defaults to the
    interpreter running this script; MediaPipe 0.10.21 ships wheels for CPython
    3.9-3.12 on x86_64 Linux (aarch64 wheels exist too, but golden files in this repo
    were made on x86_64, so other machines get a warning).
    """
    venv = Path(venv).resolve()
    repo = Path(__file__).resolve().parents[1]
    if repo == venv or repo in venv.parents:
        raise MediapipeVenvError(f"venv {venv} is inside the repository {repo}; put it outside (e.g. /work/venvs)")
    found = installed_mediapipe(venv)
    if found == version:
        provide_models(venv_python(venv))
        return venv_python(venv)
    if platform.machine() != "x86_64":
        print(f"warning: machine is {platform.machine()}, golden references were made on x86_64", file=sys.stderr)
    out = subprocess.DEVNULL if quiet else None
    if not venv_python(venv).exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        cmd: List[str] = [base_python or sys.executable, "-m", "venv", str(venv)]
        if subprocess.run(cmd, stdout=out).returncode != 0:
            raise MediapipeVenvError(f"could not create venv {venv} with {cmd[0]}")
    py = venv_python(venv)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("-q")
    if subprocess.run(pip + [f"mediapipe=={version}"], stdout=out).returncode != 0:
        raise MediapipeVenvError(f"pip install mediapipe=={version} failed in {venv}")
    found = installed_mediapipe(venv)
    if found != version:
        raise MediapipeVenvError(f"venv {venv} imports mediapipe {found!r} after install, expected {version}")
    provide_models(py)
    return py


def run_in_venv(py: Path, script: Path, args: Sequence[str], capture: bool = False) -> subprocess.CompletedProcess:
    """Run ``script`` with the venv interpreter; raise with its stderr if it fails.

    GLOG/TF log noise from MediaPipe's C++ side is turned down so real errors stand out.
    """
    env = dict(os.environ)
    env.setdefault("GLOG_minloglevel", "2")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.pop("PYTHONPATH", None)  # keep the repo's numpy-2 environment out of the numpy-1 venv
    proc = subprocess.run(
        [str(py), str(script), *args], env=env, text=True,
        stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None,
    )
    if proc.returncode != 0:
        detail = f":\n{proc.stderr[-4000:]}" if capture and proc.stderr else ""
        raise MediapipeVenvError(f"{script.name} {' '.join(args)} exited with {proc.returncode}{detail}")
    return proc


WORKER = Path(__file__).resolve().parent / "mp_reference_worker.py"


def mediapipe_bench(video: Path, settings: Optional[Sequence[str]] = None, max_frames: Optional[int] = None,
                    warmup: int = 5, venv: Path = DEFAULT_VENV) -> Dict[str, Any]:
    """MediaPipe's own tracking-mode speed on ``video``: the worker's ``bench`` JSON as a dict.

    Settings are names like "holistic_full", "pose_lite" (default: Holistic and Pose,
    complexity 0 and 1). Frames are decoded before timing; only ``process()`` is timed.
    """
    py = ensure_venv(venv, quiet=True)
    args: List[str] = ["bench", str(video), "--warmup", str(warmup)]
    if settings:
        args += ["--settings", *settings]
    if max_frames is not None:
        args += ["--max-frames", str(max_frames)]
    proc = run_in_venv(py, WORKER, args, capture=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise MediapipeVenvError(f"bench printed no JSON line; stdout was: {proc.stdout[-2000:]!r}")
    return json.loads(lines[-1])
