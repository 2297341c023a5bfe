"""``edge-holistic check-config FILE``: validate a config without starting anything.

Exit 0 when valid; otherwise print every issue (file:line: key.path: reason) and
exit 2, the same code ``run`` uses for a bad config, so scripts can tell a config
mistake from a crash.
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the YAML config file to check")
    parser.add_argument("--no-models", action="store_true",
                        help="skip checking model names against the installed model manifest")


def main(args: argparse.Namespace) -> int:
    from . import ConfigError, load_config

    try:
        cfg = load_config(args.file, models=not args.no_models)
    except ConfigError as e:
        print(f"{args.file}: invalid config ({len(e.issues)} error{'s' if len(e.issues) != 1 else ''}):",
              file=sys.stderr)
        for issue in e.issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    print(f"{args.file}: OK (device_id={cfg.device_id}, source={cfg.source.type}, task={cfg.pipeline.task}, "
          f"pose_model={cfg.pipeline.pose_model}, config hash {cfg.digest})")
    return 0
