"""The ``edge-holistic`` command.

Each verb lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``. Verb modules keep heavy imports (OpenCV, paho, LiteRT)
inside ``main`` so that ``edge-holistic --help`` and ``check-config`` start fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from . import __version__

# verb -> (module, one-line help). Verb names are a contract: scripts call them.
VERBS = {
    "analyze": ("edge_holistic.analyze", "run the pipeline on images, print one landmarks@1 JSON line per image"),
    "run": ("edge_holistic.daemon", "run the daemon: camera -> pipeline -> MQTT"),
    "check-config": ("edge_holistic.config.check", "validate a config file (exit 0, or print errors and exit 2)"),
    "models": ("edge_holistic.runtime.cli", "list, verify or add models"),
    "bench": ("edge_holistic.bench", "benchmark the pipeline on a video or image folder"),
    "ha-remove": ("edge_holistic.publish.homeassistant",
                  "remove this device from Home Assistant (empty retained discovery configs)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-holistic", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edge-holistic {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (module_name, help_text) in VERBS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:  # verb not built in this version
                continue
            raise
        p = sub.add_parser(verb, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._main(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
