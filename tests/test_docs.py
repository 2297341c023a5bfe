"""Docs that must match the code: the config table and the commands the README names."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_config_reference_is_generated_from_the_schema():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_config_docs.py")], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out in (REPO / "README.md").read_text(), "README config table is stale: run scripts/gen_config_docs.py --write"


def test_readme_names_the_two_commands_and_they_exist():
    text = (REPO / "README.md").read_text()
    for cmd in ("scripts/run.sh", "scripts/test.sh"):
        assert cmd in text
        assert (REPO / cmd).stat().st_mode & 0o111, f"{cmd} is not executable"
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def test_every_cli_verb_in_the_readme_exists():
    from edge_holistic.cli import build_parser

    verbs = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    text = (REPO / "README.md").read_text()
    for verb in ("run", "analyze", "check-config", "models", "bench"):
        assert f"`{verb}" in text
        assert verb in verbs, f"README documents `{verb}` but the CLI has no such verb"
