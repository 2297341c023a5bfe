#!/usr/bin/env python3
"""Derive landmark-only pose models: MediaPipe's pose landmark graphs minus the segmentation head.

Why: ``pose_landmark_{lite,full}.tflite`` compute five outputs, one of them a 256x256
person-segmentation mask that this project never publishes. The mask is produced by
its own decoder branch (upsampling convolutions at 64..256 px), about a third of the
model's arithmetic. Every op that feeds *only* that output can be dropped without
touching a single weight or any op the other outputs need, so the remaining outputs
are the same numbers for less work.

What the script does, per source model in ``models/manifest.yaml``:
  1. parse the flatbuffer (LiteRT's own schema bindings: ``ai_edge_litert.schema_py_generated``);
  2. walk backwards from every output except the segmentation mask, keep the ops reached,
     drop the rest, then drop the tensors and buffers nothing refers to any more;
  3. check on real crops (the committed test images, resized to the input) that every
     kept output of the derived model equals the source model's (max |diff| reported;
     the run fails above ``--tolerance``);
  4. write ``<name>_nomask.tflite`` next to the source and add/refresh a manifest entry
     (role ``pose_landmark_only``, same variant name) recording what it was derived from,
     how, and the check.

The pipeline loads the ``pose_landmark_only`` build of the requested variant when the
manifest has one (see ``edge_holistic.pipeline.task``). Re-run after the source models change:
``.venv/bin/python scripts/prune_models.py``.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import yaml

from _tflite_edit import compact_model  # scripts/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
IMAGES = REPO / "tests" / "data" / "images"
SUFFIX = "_nomask"
# Its own role, same variant names: users still pick "lite"/"full"; the pipeline loads the
# landmark-only build of that variant when the manifest has one.
DERIVED_ROLE = "pose_landmark_only"
# Outputs to drop, recognised by shape (the names are the converter's Identity_N and say nothing).
MASK_SHAPE = (1, 256, 256, 1)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prune_outputs(content: bytes, drop_shape: Tuple[int, ...] = MASK_SHAPE) -> Tuple[bytes, Dict[str, object]]:
    """Return (model bytes without the outputs of ``drop_shape`` and the ops only they need, facts)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(content))
    if len(model.subgraphs) != 1:
        raise SystemExit(f"expected one subgraph, found {len(model.subgraphs)}")
    sg = model.subgraphs[0]
    dropped = [t for t in sg.outputs if tuple(int(v) for v in sg.tensors[t].shape) == tuple(drop_shape)]
    if len(dropped) != 1:
        raise SystemExit(f"expected exactly one output of shape {drop_shape}, found {len(dropped)}")
    kept_outputs = [t for t in sg.outputs if t not in dropped]

    producer = {t: i for i, op in enumerate(sg.operators) for t in op.outputs}
    needed_ops: Set[int] = set()
    seen: Set[int] = set(kept_outputs)
    stack = list(kept_outputs)
    while stack:
        op_index = producer.get(stack.pop())
        if op_index is None or op_index in needed_ops:
            continue
        needed_ops.add(op_index)
        for t in sg.operators[op_index].inputs:
            if t >= 0 and t not in seen:
                seen.add(t)
                stack.append(t)
    before = len(sg.operators)
    sg.operators = [op for i, op in enumerate(sg.operators) if i in needed_ops]
    sg.outputs = kept_outputs
    compact_model(model)
    # A signature (if any) must not name the dropped output.
    for sig in model.signatureDefs or []:
        names = {sg.tensors[t].name for t in sg.outputs}
        sig.outputs = [o for o in (sig.outputs or []) if o.name in names]
    out = bytes(fbu.convert_object_to_bytearray(model))
    return out, {"ops_before": before, "ops_after": len(sg.operators),
                 "dropped_output": str(drop_shape)}


# --------------------------------------------------------------------------------------
# Checking


def _interpreter(content: bytes, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content, num_threads=threads)
    it.allocate_tensors()
    return it


def _outputs_by_shape(it, x: np.ndarray) -> Dict[Tuple[int, ...], List[np.ndarray]]:
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], x)
    it.invoke()
    out: Dict[Tuple[int, ...], List[np.ndarray]] = {}
    for d in it.get_output_details():
        out.setdefault(tuple(int(v) for v in d["shape"]), []).append(np.array(it.get_tensor(d["index"])))
    return out


def check_same_outputs(src: bytes, derived: bytes, images: Sequence[Path]) -> float:
    """Largest |difference| over every kept output, on each test image resized to the input."""
    import cv2

    a, b = _interpreter(src), _interpreter(derived)
    shape = a.get_input_details()[0]["shape"]
    worst = 0.0
    for path in images:
        bgr = cv2.imread(str(path))
        if bgr is None:
            continue
        rgb = cv2.cvtColor(cv2.resize(bgr, (int(shape[2]), int(shape[1]))), cv2.COLOR_BGR2RGB)
        x = (rgb.astype(np.float32) / 255.0)[None]
        oa, ob = _outputs_by_shape(a, x), _outputs_by_shape(b, x)
        for key, values in ob.items():
            for va, vb in zip(oa[key], values):
                worst = max(worst, float(np.max(np.abs(va - vb))))
    return worst


def invoke_ms(content: bytes, runs: int = 30) -> float:
    """Median single-thread invoke time, a rough figure for the manifest note."""
    it = _interpreter(content, 1)
    for _ in range(3):
        it.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


# --------------------------------------------------------------------------------------
# Manifest


def _entry_text(e: dict) -> str:
    """One manifest list item in the file's own style (flow-style input map, one key per line)."""
    lines = []
    for k, v in e.items():
        dumped = yaml.safe_dump({k: v}, default_flow_style=True, width=10_000, sort_keys=False).strip()[1:-1]
        lines.append(("  - " if not lines else "    ") + dumped)
    return "\n".join(lines) + "\n"


def update_manifest(path: Path, entries: List[dict]) -> None:
    """Insert or replace entries by name as text, leaving every other line of the file untouched.

    Other tools (the int8 quantizer) edit the same manifest; a text edit keeps their
    entries and comments byte for byte.
    """
    text = path.read_text()
    for e in entries:
        block = _entry_text(e)
        head = f"  - name: {e['name']}\n"
        start = text.find(head)
        if start < 0:
            text = text if text.endswith("\n") else text + "\n"
            text += block
            continue
        nxt = text.find("\n  - ", start + len(head) - 1)
        end = len(text) if nxt < 0 else nxt + 1
        text = text[:start] + block + text[end:]
    yaml.safe_load(text)  # still valid YAML, or fail before writing
    path.write_text(text)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", type=Path, default=MODELS)
    p.add_argument("--variants", nargs="+", default=["lite", "full", "heavy"],
                   help="pose landmark variants to derive (those missing from the manifest are skipped)")
    p.add_argument("--precision", default="float16")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest allowed |difference| of any kept output (default: 1e-4)")
    args = p.parse_args(argv)

    manifest = args.models_dir / "manifest.yaml"
    doc = yaml.safe_load(manifest.read_text())
    sources = {(m["role"], str(m["variant"]), m["precision"]): m for m in doc["models"]}
    images = sorted(IMAGES.glob("*.jpg"))
    entries = []
    for variant in args.variants:
        src = sources.get(("pose_landmark", variant, args.precision))
        if src is None:
            print(f"skip: no pose_landmark {variant} {args.precision} in the manifest", file=sys.stderr)
            continue
        src_path = args.models_dir / src["file"]
        content = src_path.read_bytes()
        if sha256_bytes(content) != src["sha256"]:
            raise SystemExit(f"{src_path}: sha256 differs from the manifest; refusing to derive from it")
        derived, facts = prune_outputs(content)
        diff = check_same_outputs(content, derived, images)
        if diff > args.tolerance:
            raise SystemExit(f"{src['name']}: derived outputs differ by {diff:g} (> {args.tolerance:g})")
        ms_src, ms_new = invoke_ms(content), invoke_ms(derived)
        out_file = Path(src["file"]).stem + SUFFIX + ".tflite"
        (args.models_dir / out_file).write_bytes(derived)
        name = src["name"].replace(f"pose_landmark_{variant}@", f"pose_landmark_{variant}{SUFFIX}@")
        entries.append({
            "name": name, "role": DERIVED_ROLE, "variant": variant, "precision": args.precision,
            "file": out_file, "sha256": sha256_bytes(derived), "size": len(derived), "input": src.get("input", {}),
            "origin": f"derived from {src['name']} (sha256 {src['sha256'][:16]}...) by scripts/prune_models.py: "
                      f"segmentation-mask output and the {facts['ops_before'] - facts['ops_after']} ops feeding only "
                      f"it removed ({facts['ops_before']} -> {facts['ops_after']} ops); weights untouched",
            "license": src.get("license", ""),
            "check": f"max |diff| of every kept output vs the source on {len(images)} test images: {diff:g}",
        })
        print(f"{name}: {facts['ops_before']} -> {facts['ops_after']} ops, max |diff| {diff:g}, "
              f"{ms_src:.1f} -> {ms_new:.1f} ms (1 thread)")
    if entries:
        update_manifest(manifest, entries)
        print(f"updated {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
