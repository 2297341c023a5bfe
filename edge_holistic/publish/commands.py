"""The ``cmd`` topic protocol: a small whitelist of JSON commands.

Payload: one JSON object, at most ``CMD_MAX_BYTES`` bytes::

    {"id": "42", "cmd": "set", "pose_model": "lite", "max_fps": 10}
    {"id": "43", "cmd": "pause"}      {"cmd": "resume"}      {"cmd": "status"}
    {"cmd": "set", "shadow": {"enabled": true, "pose_model": "lite", "precision": "int8"}}
    {"cmd": "promote"}

``id`` (optional string, echoed in the result) lets a caller match replies.
``set`` takes one or more of ``task``, ``pose_model``, ``hand_model``,
``precision``, ``max_fps`` and ``shadow`` (an object of ``pipeline.shadow`` keys: the A/B
candidate, see docs/shadow.md); it applies all of them or none. ``promote`` makes the
shadow's models the primary's and the primary's the shadow's (again = roll back). Every reply goes to
``cmd/result``: ``{"id", "cmd", "ok": true, "applied": {...}, "models": {...}}``
or ``{"id", "cmd", "ok": false, "error": "<what was wrong>"}``.

Parsing is strict on purpose: anything that reaches the broker can send here,
and nothing sent may become a file path or an unchecked value. Model names are
checked against the registry when the change is applied.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

CMD_MAX_BYTES = 4096
COMMANDS = ("set", "pause", "resume", "status", "promote")
SET_KEYS = ("task", "pose_model", "hand_model", "precision", "max_fps", "shadow")
_ID_MAX = 64


class CommandError(ValueError):
    """A rejected command; ``id`` and ``cmd`` are echoed when they could be read."""

    def __init__(self, message: str, id: Optional[str] = None, cmd: Optional[str] = None) -> None:
        super().__init__(message)
        self.id = id
        self.cmd = cmd

    def result(self) -> Dict[str, Any]:
        return {"id": self.id, "cmd": self.cmd, "ok": False, "error": str(self)}


@dataclass
class Command:
    cmd: str
    id: Optional[str] = None
    settings: Dict[str, Any] = field(default_factory=dict)


def parse_command(payload: bytes) -> Command:
    """Validate one payload; raise CommandError naming the problem."""
    if len(payload) > CMD_MAX_BYTES:
        raise CommandError(f"payload too large: {len(payload)} bytes (limit {CMD_MAX_BYTES})")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise CommandError("payload is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise CommandError(f"payload is not valid JSON: {e.msg} at position {e.pos}") from None
    if not isinstance(doc, dict):
        raise CommandError(f"payload must be a JSON object, got {type(doc).__name__}")
    cid = doc.get("id")
    if cid is not None and (not isinstance(cid, str) or len(cid) > _ID_MAX):
        raise CommandError(f"'id' must be a string of at most {_ID_MAX} characters")
    cmd = doc.get("cmd")
    if not isinstance(cmd, str):
        raise CommandError("missing 'cmd' (one of: " + ", ".join(COMMANDS) + ")", cid)
    if cmd not in COMMANDS:
        raise CommandError(f"unknown cmd {cmd!r}; valid: {', '.join(COMMANDS)}", cid, cmd)
    extra = set(doc) - {"id", "cmd"} - (set(SET_KEYS) if cmd == "set" else set())
    if extra:
        raise CommandError(f"unknown key(s) for {cmd!r}: {', '.join(sorted(extra))}", cid, cmd)
    settings: Dict[str, Any] = {}
    if cmd == "set":
        for key in SET_KEYS:
            if key not in doc:
                continue
            value = doc[key]
            if key == "shadow":
                from ..pipeline.shadow import validate_shadow

                try:  # shape and ranges now; installed model names when applied
                    validate_shadow(value)
                except ValueError as e:
                    raise CommandError(str(e), cid, cmd) from None
                value = dict(value)
            elif key == "max_fps":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                        or not 0 <= value <= 240:
                    raise CommandError(f"'max_fps' must be a number in [0, 240], got {value!r}", cid, cmd)
                value = float(value)
            elif not isinstance(value, str) or not value or len(value) > 32:
                raise CommandError(f"{key!r} must be a short string, got {value!r}", cid, cmd)
            settings[key] = value
        if not settings:
            raise CommandError("'set' needs at least one of: " + ", ".join(SET_KEYS), cid, cmd)
    return Command(cmd=cmd, id=cid, settings=settings)
