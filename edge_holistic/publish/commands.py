"""The ``cmd`` topic protocol: a small whitelist of JSON commands.

Payload: one JSON object, at most ``CMD_MAX_BYTES`` bytes::

    {"id": "42", "cmd": "set", "pose_model": "lite", "max_fps": 10}
    {"id": "43", "cmd": "pause"}      {"cmd": "resume"}      {"cmd": "status"}

``id`` (optional string, echoed in the result) lets a caller match replies.
``set`` takes one or more of ``task``, ``pose_model``, ``hand_model``,
``precision``, ``max_fps``; it applies all of them or none. Every reply goes to
``cmd/result``: ``{"id", "cmd", "ok": true, "applied": {...}, "models": {...}}``
or ``{"id", "cmd", "ok": false, "error": "<what was wrong>"}``.

Parsing is strict on purpose: anything that reaches the broker can send here,
and nothing sent may become a file path or an unchecked value. Model names are
checked against the registry when the change is applied.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

CMD_MAX_BYTES = 4096
COMMANDS = ("set", "pause", "resume", "status")
SET_KEYS = ("task", "pose_model", "hand_model", "precision", "max_fps")
_ID_MAX = 64
# A command is a flat object; a few levels leave room for a clear "wrong type" error
# on a nested value, while the decoder's recursion stays tiny.
MAX_DEPTH = 8
# Below 1/unhealthy_after fps the watchdog would see no progress; 0.1 fps = one frame in
# 10 s, well inside any sensible health.unhealthy_after (the daemon checks the exact bound).
MIN_FPS = 0.1
CHOICES = {"task": ("pose", "holistic"), "precision": ("float", "float16", "int8", "auto")}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_ID_RE = re.compile(r"^[^\x00-\x1f\x7f]*$")


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


def _max_depth(text: str, limit: int) -> int:
    """Bracket nesting depth of JSON text, outside strings; stops counting once past ``limit``.

    Linear and iteration-only, so it is safe on any input: this runs *before*
    ``json.loads``, whose C decoder recurses once per ``[``/``{`` (1,200 of them in
    a 1.2 KB payload were enough for a RecursionError that escaped the frame loop).
    """
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise _ValueRefused(f"{name} is not allowed (numbers must be finite)")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 -> inf
        raise _ValueRefused(f"number {text[:24]} is out of range (numbers must be finite)")
    return value


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > 15:
        raise _ValueRefused(f"integer {text[:24]}... is too long")
    return int(text)


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    doc: Dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _ValueRefused(f"duplicate key {_show(key)}")
        doc[key] = value
    return doc


class _ValueRefused(ValueError):
    """Raised from inside the JSON decoder hooks; turned into a CommandError."""


def _show(value: Any, limit: int = 40) -> str:
    """A short, printable rendering of a client value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def decode_payload(payload: Union[bytes, bytearray, memoryview, str]) -> Dict[str, Any]:
    """Bytes -> one JSON object, with every limit checked before the decoder runs.

    Order matters: size (cheap, bounds everything after), UTF-8, nesting depth,
    then the decoder with hooks that refuse NaN/Infinity, overflowing numbers,
    very long integers and duplicate keys.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    elif not isinstance(payload, (bytes, bytearray, memoryview)):
        raise CommandError(f"payload must be bytes, got {type(payload).__name__}")
    size = len(payload)
    if size > CMD_MAX_BYTES:
        raise CommandError(f"payload too large: {size} bytes (limit {CMD_MAX_BYTES})")
    if size == 0:
        raise CommandError("empty payload")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as e:
        raise CommandError(f"payload is not UTF-8 text (invalid byte at position {e.start})") from None
    depth = _max_depth(text, MAX_DEPTH)
    if depth > MAX_DEPTH:
        raise CommandError(f"payload nested too deep (more than {MAX_DEPTH} levels)")
    try:
        doc = json.loads(text, parse_constant=_refuse_constant, parse_float=_parse_float, parse_int=_parse_int,
                         object_pairs_hook=_no_duplicates)
    except _ValueRefused as e:
        raise CommandError(f"payload refused: {e}") from None
    except json.JSONDecodeError as e:
        raise CommandError(f"payload is not valid JSON: {e.msg} at position {e.pos}") from None
    except (ValueError, RecursionError, MemoryError) as e:  # belt and braces: nothing else may escape
        raise CommandError(f"payload is not valid JSON: {type(e).__name__}") from None
    if not isinstance(doc, dict):
        raise CommandError(f"payload must be a JSON object, got {_type(doc)}")
    return doc


def parse_command(payload: Union[bytes, bytearray, memoryview, str]) -> Command:
    """Validate one payload; raises CommandError naming the problem, and nothing else."""
    try:
        return _parse(payload)
    except CommandError:
        raise
    except Exception as e:  # noqa: BLE001 - a bug here must still not reach the frame loop
        raise CommandError(f"command could not be read ({type(e).__name__})") from None


def _parse(payload: Union[bytes, bytearray, memoryview, str]) -> Command:
    doc = decode_payload(payload)
    cid = doc.get("id")
    if cid is not None and (not isinstance(cid, str) or len(cid) > _ID_MAX or not _ID_RE.match(cid)):
        raise CommandError(f"'id' must be a string of at most {_ID_MAX} printable characters, got {_show(cid)}")
    cmd = doc.get("cmd")
    if cmd is None:
        raise CommandError("missing 'cmd' (one of: " + ", ".join(COMMANDS) + ")", cid)
    if not isinstance(cmd, str):
        raise CommandError(f"'cmd' must be a string (one of: {', '.join(COMMANDS)}), got {_type(cmd)}", cid)
    if cmd not in COMMANDS:
        raise CommandError(f"unknown cmd {_show(cmd)}; valid: {', '.join(COMMANDS)}", cid)
    allowed = {"id", "cmd"} | (set(SET_KEYS) if cmd == "set" else set())
    extra = [k for k in doc if k not in allowed]
    if extra:
        names = ", ".join(_show(k, 24) for k in sorted(extra)[:5]) + (" ..." if len(extra) > 5 else "")
        raise CommandError(f"unknown key(s) for {cmd!r}: {names}", cid, cmd)
    settings: Dict[str, Any] = {}
    if cmd == "set":
        for key in SET_KEYS:
            if key in doc:
                settings[key] = _check_setting(key, doc[key], cid)
        if not settings:
            raise CommandError("'set' needs at least one of: " + ", ".join(SET_KEYS), cid, cmd)
    return Command(cmd=cmd, id=cid, settings=settings)


def _check_setting(key: str, value: Any, cid: Optional[str]) -> Any:
    if key == "max_fps":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CommandError(f"'max_fps' must be a number, got {_type(value)}", cid, "set")
        if not math.isfinite(value) or not (value == 0 or MIN_FPS <= value <= 240):
            raise CommandError(f"'max_fps' must be 0 (no cap) or in [{MIN_FPS}, 240], got {_show(value)}",
                               cid, "set")
        return float(value)
    if not isinstance(value, str):
        raise CommandError(f"{key!r} must be a string, got {_type(value)}", cid, "set")
    choices = CHOICES.get(key)
    if choices is not None and value not in choices:
        raise CommandError(f"{key!r} must be one of {', '.join(choices)}; got {_show(value)}", cid, "set")
    if not _NAME_RE.match(value):
        # Model names are looked up in the manifest, never joined to a path; refusing
        # anything path-like here keeps that true even if a lookup were ever relaxed.
        raise CommandError(f"{key!r} must be a model name (letters, digits, '_' or '-', at most 32), "
                           f"got {_show(value)}", cid, "set")
    return value
