#!/usr/bin/env python3
"""Write MediaPipe golden references into ``tests/data/golden/``.

Why: our pipeline reimplements MediaPipe's legacy Pose/Holistic graphs on LiteRT, and
the only honest accuracy yardstick is MediaPipe itself on the same pixels. MediaPipe
is not a dependency of the package, so this script creates (or reuses) a throwaway
venv outside the repository, installs ``mediapipe==0.10.21`` there, and runs
``mp_reference_worker.py`` inside it. The worker writes one JSON file per
(solution, setting); the format is documented in ``tests/data/SOURCES.md``.

Usage:  .venv/bin/python scripts/make_reference.py [--venv DIR] [--only images|clip]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mpvenv import DEFAULT_VENV, MEDIAPIPE_VERSION, MediapipeVenvError, ensure_venv, run_in_venv  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
WORKER = Path(__file__).resolve().parent / "mp_reference_worker.py"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"throwaway venv (default {DEFAULT_VENV})")
    p.add_argument("--mediapipe", default=MEDIAPIPE_VERSION, help="mediapipe version to install")
    p.add_argument("--images", type=Path, default=DATA / "images", help="folder of stills")
    p.add_argument("--clip", type=Path, default=DATA / "clip.avi", help="video for tracking-mode references")
    p.add_argument("--out-dir", type=Path, default=DATA / "golden")
    p.add_argument("--only", choices=("images", "clip"), help="make only one half")
    args = p.parse_args(argv)

    images = sorted(f for f in args.images.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) \
        if args.images.is_dir() else []
    if args.only != "clip" and not images:
        print(f"error: no images ({', '.join(IMAGE_SUFFIXES)}) in {args.images}", file=sys.stderr)
        return 2
    if args.only != "images" and not args.clip.is_file():
        print(f"error: clip {args.clip} not found (make it with scripts/make_clip.py)", file=sys.stderr)
        return 2
    try:
        py = ensure_venv(args.venv, args.mediapipe)
        if args.only != "clip":
            run_in_venv(py, WORKER, ["images", "--out-dir", str(args.out_dir), *map(str, images)])
        if args.only != "images":
            run_in_venv(py, WORKER, ["clip", "--out-dir", str(args.out_dir), str(args.clip)])
    except MediapipeVenvError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
