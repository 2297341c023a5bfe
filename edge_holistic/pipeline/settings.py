"""The pipeline settings, defined once: names, types, ranges or choices, defaults, help.

Why one table: the same rules used to live in four places (the config schema, the MQTT
``cmd`` parser, the pipeline's own checks and the CLI's argparse choices) and drifted.
Everything that accepts a pipeline setting validates it here:

* the engine (:class:`~edge_holistic.pipeline.engine.Engine` options and ``update``),
* the CLI (``analyze``/``bench`` flags come from :func:`add_arguments`),
* the config section and MQTT ``cmd`` (:func:`validate`, :func:`check_max_fps`).

``validate(name, value)`` returns the normalised value or raises ``ValueError`` whose
message starts with the key, e.g. ``"threads must be an integer in [1, 16] or 'auto', got 0"``.
Model names are checked twice: here against the known variant names, and by the model
registry against what is actually installed (a heavy pose model may be missing).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

TASKS = ("pose", "holistic")
POSE_VARIANTS = ("lite", "full", "heavy")
HAND_VARIANTS = ("lite", "full")
PRECISIONS = ("float", "float16", "int8", "auto")


@dataclass(frozen=True)
class Setting:
    """One pipeline setting.

    ``kind``: "choice" (``choices``), "int" / "float" (inclusive ``minimum``..``maximum``;
    ``also`` names one extra word accepted, like 'auto'), "bool".
    ``default`` is the engine's and the CLI's; ``config_default`` the daemon config's when it
    differs (a daemon on an unknown board starts with ``auto``; a benchmark wants a fixed number).
    ``engine``: an :class:`EngineOptions` field (``max_fps`` is the daemon's pacing, not the engine's).
    ``installed``: the value names a model variant; the model registry checks it is installed
    (its error lists the installed ones), so the CLI leaves the check to it.
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: Tuple[str, ...] = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    also: str = ""
    config_default: Any = None
    engine: bool = True
    installed: bool = False  # a model variant: the registry has the last word (what is installed)

    @property
    def daemon_default(self) -> Any:
        return self.default if self.config_default is None else self.config_default

    def describe(self) -> str:
        """The accepted values in words, for error messages and docs."""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "bool":
            return "true or false"
        what = "an integer" if self.kind == "int" else "a number"
        text = f"{what} in [{_num(self.minimum)}, {_num(self.maximum)}]"
        return text + (f" or {self.also!r}" if self.also else "")


def _num(x: Optional[float]) -> str:
    if x is None:
        return "..."
    return str(int(x)) if float(x).is_integer() else str(x)


SETTINGS: Dict[str, Setting] = {s.name: s for s in (
    Setting("task", "choice", "pose", "what to compute: pose (33 points) or holistic (pose + face + both hands)",
            choices=TASKS),
    Setting("pose_model", "choice", "full", "pose landmark model: lite | full | heavy (if installed)",
            choices=POSE_VARIANTS, installed=True),
    Setting("hand_model", "choice", "full", "hand landmark model (holistic): lite | full", choices=HAND_VARIANTS, installed=True),
    Setting("precision", "choice", "float", "float | int8 | auto (int8 on ARM, float on x86)",
            choices=PRECISIONS, config_default="auto"),
    Setting("threads", "int", 2, "interpreter threads per model, or auto", minimum=1, maximum=16, also="auto",
            config_default="auto"),
    Setting("smooth", "bool", True, "temporal landmark smoothing (MediaPipe's one-euro filter)"),
    Setting("min_detection_confidence", "float", 0.5, "person detector score threshold", minimum=0.0, maximum=1.0),
    Setting("min_tracking_confidence", "float", 0.5, "landmark presence below this re-runs detection",
            minimum=0.0, maximum=1.0),
    Setting("max_fps", "float", 15.0, "cap on processed frames per second; 0 = no cap", minimum=0.0, maximum=240.0,
            engine=False),
)}

ENGINE_SETTINGS = tuple(name for name, s in SETTINGS.items() if s.engine)


def setting(name: str) -> Setting:
    try:
        return SETTINGS[name]
    except KeyError:
        raise ValueError(f"unknown pipeline setting {name!r}; valid: {', '.join(SETTINGS)}") from None


def validate(name: str, value: Any) -> Any:
    """The normalised value of one setting, or ``ValueError`` naming the key.

    Strings from a command line or YAML are accepted for numbers and booleans
    ("2", "0.5", "true"); ``bool`` is never taken for a number.
    """
    s = setting(name)
    bad = f"{name} must be {s.describe()}, got {value!r}"
    if s.kind == "choice":
        v = value.strip().lower() if isinstance(value, str) else None
        if v not in s.choices:
            raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(s.choices)}")
        return v
    if s.kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        raise ValueError(bad)
    if s.also and isinstance(value, str) and value.strip().lower() == s.also:
        return s.also
    if isinstance(value, bool):
        raise ValueError(bad)
    try:
        if s.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            v: Any = int(value)
        else:
            v = float(value)
            if not math.isfinite(v):
                raise ValueError
    except (TypeError, ValueError):
        raise ValueError(bad) from None
    if (s.minimum is not None and v < s.minimum) or (s.maximum is not None and v > s.maximum):
        raise ValueError(bad)
    return v


def validate_all(values: Mapping[str, Any]) -> Dict[str, Any]:
    """Validate several settings at once; the first bad key raises (nothing is applied)."""
    return {name: validate(name, value) for name, value in values.items()}


def check_max_fps(max_fps: float, unhealthy_after: float) -> float:
    """``max_fps`` against the watchdog: a capped frame interval must stay well inside
    ``health.unhealthy_after`` or the watchdog would judge a healthy, throttled daemon dead.

    Rule: 0 (no cap) or at least ``2 / unhealthy_after`` (two frames per watchdog period).
    """
    v = validate("max_fps", max_fps)
    if v > 0 and v < 2.0 / float(unhealthy_after):
        raise ValueError(f"max_fps must be 0 or at least {2.0 / float(unhealthy_after):g} "
                         f"(2 / health.unhealthy_after = 2 / {float(unhealthy_after):g}), got {max_fps!r}")
    return v


# --------------------------------------------------------------------------------------
# Command-line flags


def argparse_type(name: str):
    """An argparse ``type=`` that validates through :func:`validate`."""

    def parse(value: str):
        try:
            return validate(name, value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name  # argparse names the type in its "invalid ... value" message
    return parse


def argparse_kwargs(name: str, default: Any = None) -> Dict[str, Any]:
    """``add_argument`` keyword arguments for one setting (flag ``--name-with-dashes``)."""
    s = setting(name)
    d = s.default if default is None else default
    kw: Dict[str, Any] = {"dest": name, "default": d, "help": f"{s.help} (default: {d})"}
    if s.kind == "choice" and s.installed:
        kw.update(metavar="|".join(s.choices))
    elif s.kind == "choice":
        kw.update(choices=s.choices, type=str.lower)
    elif s.kind == "bool":
        kw.update(type=argparse_type(name), metavar="true|false")
    else:
        kw.update(type=argparse_type(name), metavar=("N" if s.kind == "int" else "X") + ("|" + s.also if s.also else ""))
    return kw


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, names: Iterable[str] = ENGINE_SETTINGS,
                  defaults: Optional[Mapping[str, Any]] = None) -> None:
    """Add one flag per named setting, typed and checked by the table."""
    defaults = defaults or {}
    for name in names:
        parser.add_argument(flag(name), **argparse_kwargs(name, defaults.get(name)))
