"""``edge-holistic models list|verify|add``: what the manifests offer, whether the files are intact,
and adding a model (e.g. the heavy pose model) to the writable user models directory."""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="models_cmd", metavar="list|verify|add")
    ls = sub.add_parser("list", help="list every model: role, variant, precision, size, file state")
    ls.add_argument("--json", action="store_true", help="one JSON object per model")
    vf = sub.add_parser("verify", help="check every file's sha256 (and with --load, that it loads)")
    vf.add_argument("--load", action="store_true", help="also open each model in an interpreter")
    ad = sub.add_parser("add", help="copy a model file into the user models directory and register it")
    ad.add_argument("file", help="the .tflite file, e.g. MediaPipe's pose_landmark_heavy.tflite")
    ad.add_argument("--role", default="pose_landmark", help="model role (default: pose_landmark)")
    ad.add_argument("--variant", default="heavy", help="variant name users select it by (default: heavy)")
    ad.add_argument("--precision", default="float16", help="float16 (MediaPipe's float files) or int8")
    p.add_argument("--models-dir", help="bundled models folder (default: the package's, or $EDGE_HOLISTIC_MODELS)")
    p.add_argument("--user-models-dir", help="writable user models folder merged over the bundled one "
                   "(default: $EDGE_HOLISTIC_MODELS_DIR or ~/.local/share/edge-holistic/models; "
                   "the service uses /var/lib/edge-holistic/models)")


def main(args: argparse.Namespace) -> int:
    import json

    from .registry import ModelError, Registry, add_user_model

    try:
        reg = Registry(args.models_dir or None, user_dir=getattr(args, "user_models_dir", None))
    except ModelError as e:
        print(f"edge-holistic: error: {e}", file=sys.stderr)
        return 2
    cmd = args.models_cmd or "list"
    if cmd == "add":
        try:
            spec = add_user_model(args.file, args.role, args.variant, args.precision, registry=reg)
        except (ModelError, OSError) as e:
            print(f"edge-holistic: error: {e}", file=sys.stderr)
            return 2
        print(f"added {spec.name} ({spec.size} bytes, sha256 {spec.sha256[:16]}…) to {spec.directory}; "
              f"it is now variant {spec.variant!r} of {spec.role}")
        return 0
    results = reg.verify_all()
    if cmd == "list":
        rows = []
        for spec, err in sorted(results, key=lambda r: (r[0].role, r[0].variant, r[0].precision)):
            state = "ok" if err is None else ("missing" if "missing" in err else "altered")
            rows.append({"name": spec.name, "role": spec.role, "variant": spec.variant, "precision": spec.precision,
                         "size_mb": round(spec.size / 1e6, 2), "file": spec.file, "path": str(reg.path(spec)), "state": state,
                         "source": "user" if reg.is_user(spec) else "bundled"})
        if getattr(args, "json", False):
            for r in rows:
                print(json.dumps(r))
        else:
            print(f"{'role':<14} {'variant':<8} {'precision':<9} {'size MB':>7}  {'state':<8} {'source':<7} name")
            for r in rows:
                print(f"{r['role']:<14} {r['variant']:<8} {r['precision']:<9} {r['size_mb']:>7.2f}  {r['state']:<8} "
                      f"{r['source']:<7} {r['name']}")
            print(f"\n{len(rows)} models: bundled in {reg.models_dir}, user-added in {reg.user_dir}; "
                  "'ok' = present with the manifest's sha256. "
                  "Which are loaded in a running daemon is in its MQTT status topic.")
        return 0
    bad = 0
    for spec, err in results:
        if err is None and getattr(args, "load", False):
            try:
                reg.open(spec, num_threads=1)
            except Exception as e:  # the runtime's own error text is the useful part
                err = f"{spec.file}: verified but failed to load: {e}"
        if err:
            bad += 1
            print(f"FAIL {spec.name}: {err}")
        else:
            print(f"ok   {spec.name}  {spec.sha256[:16]}…  {spec.file}")
    print(f"{len(results) - bad} ok, {bad} failed")
    return 1 if bad else 0
