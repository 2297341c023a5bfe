#!/usr/bin/env python3
"""Landmarks on one platform against another (ARM vs x86): same stills, same models.

  platform_agreement.py dump OUT.json IMAGE...      # runs `edge-holistic analyze` (the installed one)
  platform_agreement.py compare X86.json ARM.json   # prints one line per (task, precision)

Why: LiteRT's XNNPACK kernels differ per CPU (NEON vs AVX, int8 rounding), so identical
models give slightly different numbers on a Pi. The golden tests bound the error against
MediaPipe; this puts a number on the ARM-vs-x86 difference itself. The error of a part is
the median landmark distance divided by that part's box diagonal (in x86's result), in
percent, as in tests/golden.py; "presence" counts parts found on one side only.
Uses only the CLI and the landmarks@1 message, so it runs in any installed venv.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = [("pose", "float"), ("pose", "int8"), ("holistic", "float"), ("holistic", "int8")]
PARTS = ("pose", "face", "left_hand", "right_hand")


def dump(out: str, images: list) -> int:
    exe = Path(sys.executable).parent / "edge-holistic"
    doc = {"machine": os.uname().machine, "results": {}, "seconds": {}}
    for task, precision in CONFIGS:
        t0 = time.monotonic()
        r = subprocess.run([str(exe), "analyze", "--task", task, "--precision", precision, "--threads", "1", *images],
                           capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        msgs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        doc["results"][f"{task}/{precision}"] = {
            Path(m["source"]).name: {p: (m.get(p) or {}).get("landmarks") for p in PARTS} for m in msgs}
        doc["seconds"][f"{task}/{precision}"] = round(time.monotonic() - t0, 1)
    Path(out).write_text(json.dumps(doc))
    return 0


def _rows(a: list) -> list:
    return [(float(r[0]), float(r[1])) for r in a]


def compare(ref_path: str, other_path: str) -> int:
    import numpy as np

    ref, other = json.loads(Path(ref_path).read_text()), json.loads(Path(other_path).read_text())
    print(f"{'config':<16} {'parts':>5} {'median %':>9} {'worst %':>8} {'presence':>8}   ({other['machine']} vs {ref['machine']})")
    summary = {}
    for key, images in ref["results"].items():
        errs, flips, n = [], 0, 0
        for name, parts in images.items():
            theirs = other["results"].get(key, {}).get(name, {})
            for part in PARTS:
                a, b = parts.get(part), theirs.get(part)
                if (a is None) != (b is None):
                    flips += 1
                if a is None or b is None:
                    continue
                pa, pb = np.array(_rows(a)), np.array(_rows(b))
                diag = float(np.linalg.norm(pa.max(axis=0) - pa.min(axis=0))) or 1e-9
                errs.append(float(np.median(np.linalg.norm(pa - pb, axis=1))) / diag * 100)
                n += 1
        med = float(np.median(errs)) if errs else float("nan")
        worst = float(max(errs)) if errs else float("nan")
        summary[key] = {"parts": n, "median_pct": round(med, 3), "worst_pct": round(worst, 3), "presence_flips": flips}
        print(f"{key:<16} {n:>5} {med:>9.3f} {worst:>8.3f} {flips:>8}")
    print(json.dumps({"agreement": summary}))
    return 0


def main() -> int:
    if len(sys.argv) >= 4 and sys.argv[1] == "dump":
        return dump(sys.argv[2], sys.argv[3:])
    if len(sys.argv) == 4 and sys.argv[1] == "compare":
        return compare(sys.argv[2], sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
