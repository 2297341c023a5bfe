#!/usr/bin/env python3
"""Reproduce the bundled float models, and add the optional pose 'heavy' model.

  python scripts/fetch_models.py verify-wheel        # re-derive files from mediapipe==0.10.21, compare
  python scripts/fetch_models.py heavy --file PATH   # register a pose_landmark_heavy.tflite you have
  python scripts/fetch_models.py heavy --download    # fetch it from MediaPipe's model storage (online)

Why: MediaPipe's own package is not installable on a Raspberry Pi today, so the
project carries the model files itself. This script shows where each came from
(the wheel is downloaded for x86_64 on purpose: the model files inside are the
same on every platform) and keeps the manifest's checksums honest. The heavy
model (~27 MB) is not bundled; once registered it is a first-class variant.
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
    """Copy (or download) the heavy pose model into models/ and add its manifest entry."""
    dest = MODELS / HEAVY_NAME
    if args.file:
        src = Path(args.file)
        if not src.is_file():
            print(f"error: {src}: no such file", file=sys.stderr)
            return 2
        if src.resolve() != dest.resolve():
            shutil.copyfile(src, dest)
        origin = f"user-supplied file ({src.name}); expected to be MediaPipe's pose_landmark_heavy.tflite"
    elif args.download:
        print(f"downloading {HEAVY_URL}")
        with urllib.request.urlopen(HEAVY_URL, timeout=60) as r, open(dest, "wb") as f:
            shutil.copyfileobj(r, f)
        origin = f"MediaPipe model storage: {HEAVY_URL}"
    else:
        print("error: give --file PATH or --download", file=sys.stderr)
        return 2
    # Sanity: same I/O as lite/full (1x256x256x3 in, 195-value landmarks out).
    sys.path.insert(0, str(REPO))
    from edge_holistic.runtime.interpreter import TfliteModel

    m = TfliteModel(str(dest), num_threads=1)
    if m.input_shape != (1, 256, 256, 3) or not any(int(__import__("numpy").prod(s)) == 195 for s in m.output_shapes):
        dest.unlink()
        print(f"error: {args.file or HEAVY_URL} is not a pose landmark model (input {m.input_shape})", file=sys.stderr)
        return 2
    from edge_holistic.runtime.registry import sha256_file

    digest = sha256_file(dest)
    text = MANIFEST.read_text()
    doc = yaml.safe_load(text)
    doc["models"] = [e for e in doc["models"] if e.get("name") != "pose_landmark_heavy@float16"]
    entry = {
        "name": "pose_landmark_heavy@float16", "role": "pose_landmark", "variant": "heavy", "precision": "float16",
        "file": HEAVY_NAME, "sha256": digest, "size": dest.stat().st_size,
        "input": {"shape": [1, 256, 256, 3], "range": "[0,1]", "layout": "NHWC", "color": "RGB"},
        "origin": origin, "license": "Apache-2.0",
    }
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    doc["models"].append(entry)
    MANIFEST.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=120))
    print(f"registered {HEAVY_NAME} sha256 {digest} ({entry['size']} bytes)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("verify-wheel", help="re-derive wheel-sourced models and compare checksums")
    w.add_argument("--write", action="store_true", help="also write the files into models/")
    h = sub.add_parser("heavy", help="add pose_landmark_heavy.tflite")
    h.add_argument("--file", help="path to a pose_landmark_heavy.tflite you already have")
    h.add_argument("--download", action="store_true", help="download from MediaPipe's model storage")
    args = ap.parse_args()
    os.chdir(REPO)
    return verify_wheel(args) if args.cmd == "verify-wheel" else register_heavy(args)


if __name__ == "__main__":
    sys.exit(main())
