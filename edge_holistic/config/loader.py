"""Load and validate the YAML config, reporting every problem with key path and line.

Why ``yaml.compose`` instead of ``safe_load``: the node tree keeps each key's
start mark, so an error can say ``config.yaml:12: mqtt.port: ...``. Values are
then built with PyYAML's own safe constructor, so YAML typing rules (``yes``,
``0x10``, ``1e3``) are exactly PyYAML's.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml
from yaml.constructor import SafeConstructor

from .schema import Config

PASSWORD_ENV = "EDGE_HOLISTIC_MQTT_PASSWORD"
CREDENTIAL_NAME = "mqtt_password"  # systemd LoadCredential=mqtt_password:/etc/edge-holistic/mqtt_password


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where (key path, line) and why."""

    path: str
    message: str
    line: Optional[int] = None
    origin: str = ""  # the file name, or the command-line flag that set the value

    def __str__(self) -> str:
        where = self.origin or "config"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.path or '(top level)'}: {self.message}"


class ConfigError(Exception):
    """The config cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: List[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


# --------------------------------------------------------------------------------------
# YAML -> plain data + line marks
# --------------------------------------------------------------------------------------
def _to_data(node: yaml.Node, path: str, marks: Dict[str, int], issues: List[ConfigIssue],
             origin: str, ctor: SafeConstructor) -> Any:
    marks.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: Dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                issues.append(ConfigIssue(path, f"key {key!r} is not a string", key_node.start_mark.line + 1, origin))
                continue
            sub = f"{path}.{key}" if path else key
            if key in out:
                issues.append(ConfigIssue(sub, "duplicate key", key_node.start_mark.line + 1, origin))
                continue
            marks[sub] = key_node.start_mark.line + 1
            out[key] = _to_data(value_node, sub, marks, issues, origin, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(n, f"{path}[{i}]", marks, issues, origin, ctor) for i, n in enumerate(node.value)]
    return ctor.construct_object(node, deep=True)


def parse_yaml(text: str, origin: str) -> Tuple[Dict[str, Any], Dict[str, int], List[ConfigIssue]]:
    """Plain dict, {key path: line}, and structural issues (syntax, duplicates)."""
    issues: List[ConfigIssue] = []
    marks: Dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(e, "problem", None) or str(e)
        return {}, marks, [ConfigIssue("", f"not valid YAML: {reason}", line, origin)]
    if root is None:  # empty file: every default
        return {}, marks, issues
    if not isinstance(root, yaml.MappingNode):
        return {}, marks, [ConfigIssue("", "the file must be a mapping of sections", root.start_mark.line + 1, origin)]
    try:
        data = _to_data(root, "", marks, issues, origin, SafeConstructor())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        return {}, marks, [ConfigIssue("", f"not valid YAML: {e}", mark.line + 1 if mark else None, origin)]
    return data, marks, issues


# --------------------------------------------------------------------------------------
# plain data -> dataclasses
# --------------------------------------------------------------------------------------
def _type_name(t: Any) -> str:
    return {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}.get(t, str(t))


def _check_scalar(value: Any, tp: Any, meta: Mapping[str, Any]) -> Tuple[Any, Optional[str]]:
    """(converted value, error or None) for one leaf."""
    if meta.get("as_str") and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if meta.get("auto") and value == "auto":
        return value, None
    if typing.get_origin(tp) is typing.Union:  # Union[int, str] with auto: the non-auto alternative is int
        tp = int
    if tp is bool:
        if not isinstance(value, bool):
            return value, f"must be {_type_name(bool)}, got {value!r}"
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            extra = " or 'auto'" if meta.get("auto") else ""
            return value, f"must be {_type_name(int)}{extra}, got {value!r}"
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"must be {_type_name(float)}, got {value!r}"
        value = float(value)
        if not math.isfinite(value):
            return value, f"must be finite, got {value!r}"
    elif tp is str:
        if not isinstance(value, str):
            return value, f"must be {_type_name(str)}, got {value!r}"
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        return value, f"must be one of {', '.join(map(str, choices))}; got {value!r}"
    if "min" in meta and value < meta["min"]:
        return value, f"must be >= {meta['min']}, got {value!r}"
    if "gt" in meta and value <= meta["gt"]:
        return value, f"must be > {meta['gt']}, got {value!r}"
    if "max" in meta and value > meta["max"]:
        return value, f"must be <= {meta['max']}, got {value!r}"
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):  # fullmatch: "$" would let a trailing newline in
        if meta.get("pattern_doc"):
            return value, f"invalid value {value!r}: {meta['pattern_doc']}"
        return value, f"invalid value {value!r} (must match {meta['pattern']})"
    return value, None


def _build(cls: type, data: Any, path: str, marks: Dict[str, int], origins: Dict[str, str],
           issues: List[ConfigIssue], default_origin: str) -> Any:
    def issue(p: str, msg: str) -> None:
        # A value set on the command line is reported against the flag, not the file.
        o = origins.get(p, default_origin)
        line = None if p in origins else marks.get(p, marks.get(path))
        issues.append(ConfigIssue(p, msg, line, o))

    if data is None:
        data = {}
    if not isinstance(data, dict):
        issue(path, f"must be a mapping (section), got {type(data).__name__}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in fields:
            sub = f"{path}.{key}" if path else key
            issue(sub, f"unknown key; valid keys here: {', '.join(fields)}")
    kwargs: Dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            continue
        sub = f"{path}.{name}" if path else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data[name], sub, marks, origins, issues, default_origin)
            continue
        value, err = _check_scalar(data[name], tp, f.metadata)
        if err:
            issue(sub, err)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _file_problem(path: str, want: str = "file") -> Optional[str]:
    """Why ``path`` is not a usable file (or directory), or None.

    ``Path.is_file()`` raises PermissionError under a directory we may not search (e.g.
    systemd ``ProtectHome=``); that is a config error to report, never a traceback.
    """
    try:
        ok = Path(path).is_dir() if want == "folder" else Path(path).is_file()
    except OSError as e:
        return f"cannot access {path}: {e.strerror or e}"
    return None if ok else f"{want} not found: {path}"


def _cross_checks(cfg: Config, issue) -> None:
    """Rules spanning several keys."""
    s = cfg.source
    if s.type == "file" and not s.path:
        issue("source.path", "required when source.type is file")
    elif s.type == "file" and _file_problem(s.path):
        issue("source.path", "video " + _file_problem(s.path))
    if s.type == "images" and not s.path:
        issue("source.path", "required when source.type is images")
    elif s.type == "images" and _file_problem(s.path, "folder"):
        issue("source.path", "image " + _file_problem(s.path, "folder"))
    if s.type == "gstreamer" and "appsink" not in s.pipeline:
        issue("source.pipeline", "required when source.type is gstreamer, and must end in an appsink")
    if s.type == "v4l2" and not (s.device.isdigit() or re.fullmatch(r"/dev/\S+", s.device)):
        issue("source.device", f"must be a device index or a /dev path, got {s.device!r}")
    m = cfg.mqtt
    if m.reconnect_min_delay > m.reconnect_max_delay:
        issue("mqtt.reconnect_min_delay", "must not exceed mqtt.reconnect_max_delay")
    if m.password_file and not m.username:
        issue("mqtt.password_file", "a password needs mqtt.username")
    if m.password_file and _file_problem(m.password_file):
        issue("mqtt.password_file", _file_problem(m.password_file))
    for key in ("ca_certs", "certfile", "keyfile"):
        value = getattr(m.tls, key)
        if value and _file_problem(value):
            issue(f"mqtt.tls.{key}", _file_problem(value))
    if bool(m.tls.certfile) != bool(m.tls.keyfile):
        issue("mqtt.tls.certfile", "mqtt.tls.certfile and mqtt.tls.keyfile go together")
    h = cfg.health
    if h.memory_soft_mb and h.memory_hard_mb and h.memory_soft_mb >= h.memory_hard_mb:
        issue("health.memory_soft_mb", "must be below health.memory_hard_mb")
    if h.unhealthy_after < h.stall_timeout:
        issue("health.unhealthy_after", "must be >= health.stall_timeout (the source is reopened first)")
    # A cap that lets fewer than two frames through per unhealthy_after starves the watchdog's
    # "no frame processed" clock: systemd restarted the daemon every ~95 s (issue 10, item 6).
    from ..pipeline.settings import check_max_fps

    for key, value in (("pipeline.max_fps", cfg.pipeline.max_fps), ("health.shed_max_fps", h.shed_max_fps)):
        try:
            check_max_fps(value, h.unhealthy_after)
        except ValueError as e:
            issue(key, str(e).replace("max_fps ", "", 1))
    w = cfg.http
    if w.token_file and _file_problem(w.token_file):
        issue("http.token_file", _file_problem(w.token_file))
    if w.enabled and not is_loopback(w.host) and not w.token_file and not w.allow_anonymous:
        issue("http.host", f"binding {w.host!r} (beyond loopback) needs http.token_file, or "
                           "http.allow_anonymous: true to serve it without a token")


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_models(cfg: Config, registry: Any = None) -> List[Tuple[str, str]]:
    """(key path, message) for model names the registry does not hold.

    Uses the real manifest: 'heavy' is valid only where its file is installed.
    """
    from ..runtime import ModelError, Registry, resolve_precision

    out: List[Tuple[str, str]] = []
    try:
        reg = registry or Registry()
    except ModelError as e:
        return [("pipeline", str(e))]
    p = cfg.pipeline
    roles = [("pose_model", "pose_landmark", p.pose_model)]
    if p.task == "holistic":
        roles.append(("hand_model", "hand_landmark", p.hand_model))
    for key, role, variant in roles:
        valid = reg.variants(role)
        if variant not in valid:
            out.append((f"pipeline.{key}", f"unknown {role} model {variant!r}; installed: {', '.join(valid) or 'none'}"))
            continue
        if p.precision != "auto":
            prec = resolve_precision(p.precision)
            have = reg.precisions(role, variant)
            if prec not in have:
                out.append(("pipeline.precision",
                            f"no {prec} build of {role} {variant!r}; installed: {', '.join(have)}"))
    return out


def read_password(cfg: Config) -> Optional[str]:
    """The MQTT password: env var, then systemd credential, then password_file. Never logged."""
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    files = []
    if cred_dir:
        files.append(Path(cred_dir, CREDENTIAL_NAME))
    if cfg.mqtt.password_file:
        files.append(Path(cfg.mqtt.password_file))
    for f in files:
        if f.is_file():
            lines = f.read_text().splitlines()
            return lines[0] if lines else ""
    return None


def load_config(path: Optional[str] = None, text: Optional[str] = None,
                overrides: Optional[Mapping[str, Tuple[Any, str]]] = None,
                models: bool = True, registry: Any = None) -> Config:
    """Read, validate and return the config, or raise ConfigError with every issue.

    ``overrides`` maps key paths to (value, origin flag), e.g.
    ``{"mqtt.port": (1884, "--mqtt-port")}``; they are validated like file values
    and errors name the flag. ``models=False`` skips the registry check.
    """
    origin = str(path) if path else "<config>"
    if text is None:
        if path is None:
            raise ConfigError([ConfigIssue("", "no config file given", None, origin)])
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            raise ConfigError([ConfigIssue("", f"cannot read config file: {e.strerror or e}", None, origin)]) from e
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError([ConfigIssue("", f"not UTF-8 text: {e}", None, origin)]) from e
    data, marks, issues = parse_yaml(text, origin)
    if issues and not data:
        raise ConfigError(issues)
    origins: Dict[str, str] = {}
    for key_path, (value, flag) in (overrides or {}).items():
        parts = key_path.split(".")
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        origins[key_path] = flag
    cfg: Config = _build(Config, data, "", marks, origins, issues, origin)

    def issue(p: str, msg: str) -> None:
        issues.append(ConfigIssue(p, msg, None if p in origins else marks.get(p), origins.get(p, origin)))

    reported = {i.path for i in issues}
    structural = bool(issues) and not data

    def later_issue(p: str, msg: str) -> None:
        # Values that failed their own check were replaced by defaults: don't pile on.
        if p not in reported:
            issue(p, msg)

    if not structural:
        _cross_checks(cfg, later_issue)
    if models and not any(p.startswith("pipeline") for p in reported):
        for key, msg in check_models(cfg, registry):
            later_issue(key, msg)
    if issues:
        raise ConfigError(issues)
    canonical = yaml.safe_dump(public_dict(cfg), sort_keys=True).encode()
    cfg.path = str(path) if path else None
    cfg.digest = hashlib.sha256(canonical).hexdigest()[:16]
    try:
        cfg.mqtt_password = read_password(cfg)
    except OSError as e:
        raise ConfigError([ConfigIssue("mqtt.password_file", f"cannot read: {e.strerror or e}",
                                       marks.get("mqtt.password_file"), origin)]) from e
    return cfg


def public_dict(cfg: Config) -> Dict[str, Any]:
    """The config as published in ``status``: no secrets, no internal fields."""
    d = dataclasses.asdict(cfg)
    for k in ("mqtt_password", "path", "digest"):
        d.pop(k, None)
    return d
