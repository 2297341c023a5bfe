"""``edge-holistic models list|verify``: what the manifest offers and whether the files are intact."""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="models_cmd", metavar="list|verify")
    ls = sub.add_parser("list", help="list every model: role, variant, precision, size, file state")
    ls.add_argument("--json", action="store_true", help="one JSON object per model")
    vf = sub.add_parser("verify", help="check every file's sha256 (and with --load, that it loads)")
    vf.add_argument("--load", action="store_true", help="also open each model in an interpreter")
    p.add_argument("--models-dir", help="models folder (default: bundled models/ or $EDGE_HOLISTIC_MODELS)")


def main(args: argparse.Namespace) -> int:
    import json

    from .registry import ModelError, Registry

    try:
        reg = Registry(args.models_dir) if args.models_dir else Registry()
    except ModelError as e:
        print(f"edge-holistic: error: {e}", file=sys.stderr)
        return 2
    cmd = args.models_cmd or "list"
    results = reg.verify_all()
    if cmd == "list":
        rows = []
        for spec, err in sorted(results, key=lambda r: (r[0].role, r[0].variant, r[0].precision)):
            state = "ok" if err is None else ("missing" if "missing" in err else "altered")
            rows.append({"name": spec.name, "role": spec.role, "variant": spec.variant, "precision": spec.precision,
                         "size_mb": round(spec.size / 1e6, 2), "file": spec.file, "state": state})
        if getattr(args, "json", False):
            for r in rows:
                print(json.dumps(r))
        else:
            print(f"{'role':<14} {'variant':<8} {'precision':<9} {'size MB':>7}  {'state':<8} name")
            for r in rows:
                print(f"{r['role']:<14} {r['variant']:<8} {r['precision']:<9} {r['size_mb']:>7.2f}  {r['state']:<8} {r['name']}")
            print(f"\n{len(rows)} models in {reg.models_dir}; 'ok' = present with the manifest's sha256. "
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
