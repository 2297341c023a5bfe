"""Control: ONE queue and ONE apply path for every change to a running daemon.

Sources of change — an MQTT ``cmd`` payload (paho's thread), a web or Home Assistant
command (their threads, waiting for the result), a SIGHUP reload (the signal handler sets
a flag), a memory-level change (the health thread) — all become :class:`Change` items in
one queue. The frame loop calls :meth:`Control.apply_pending` between two frames, so the
engine, grabber and MQTT session are only ever swapped by one thread, and every change
goes through the same validation and produces the same ``cmd/result`` document.

Bounds: at most ``EXTERNAL_LIMIT`` client commands wait at once (more are refused with an
error result and counted); internal changes (reload, shed) are coalesced — a newer one
replaces a waiting one of the same kind — so they are never dropped and never pile up.

Reload builds every new part (config, engine, grabber, MQTT session) *before* it stops or
swaps anything; on any failure the new parts are closed, the running ones keep going and
``status.config_error`` says why (issue 10, item 4).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional

log = logging.getLogger("edge_holistic.daemon")

from ..pipeline.settings import ENGINE_SETTINGS

EXTERNAL_LIMIT = 32
STOP_FLUSH_SECONDS = 3.0
SHED_MODELS = {"pose_model": "lite", "hand_model": "lite"}


@dataclass
class Parts:
    """The swappable parts of a running daemon; replaced as a whole, never mutated in place."""

    cfg: Any  # config.Config
    engine: Any  # pipeline Engine in live mode (submit/update/flush/close/models/effective_options)
    grabber: Any  # camera.FrameGrabber
    session: Any = None  # publish.mqtt.MqttSession, or None when mqtt.enabled is false


class Builder:
    """What control needs to build parts; app.py provides the real one, tests a fake."""

    def load_config(self, path: str, overrides: Dict[str, Any]) -> Any:
        raise NotImplementedError

    def make_engine(self, cfg: Any, wanted: Optional[Dict[str, Any]] = None) -> Any:
        """At start only: a reload changes the running engine through ``update``."""
        raise NotImplementedError

    def make_grabber(self, cfg: Any) -> Any:  # built, not started
        raise NotImplementedError

    def make_session(self, cfg: Any) -> Any:  # built, not started; None when MQTT is off
        raise NotImplementedError

    def check_models(self, changes: Dict[str, Any]) -> None:
        """Raise ValueError naming the key when a model change names nothing installed."""


@dataclass
class _Reply:
    event: threading.Event = field(default_factory=threading.Event)
    result: Optional[Dict[str, Any]] = None


@dataclass
class Change:
    kind: str  # "payload" (raw MQTT bytes) | "command" (a dict) | "reload" | "shed"
    data: Any = None
    origin: str = "mqtt"
    reply: Optional[_Reply] = None


def check_max_fps(value: Any, unhealthy_after: float, key: str = "max_fps") -> float:
    """max_fps (0 = no cap) must let at least two frames through per ``unhealthy_after``
    (the settings table's rule); the error names ``key``.

    Why: a cap below that starves the watchdog's "no frame processed" clock and made
    systemd restart the daemon every ~95 s (issue 10, item 6).
    """
    from ..pipeline import settings

    try:
        return float(settings.check_max_fps(value, unhealthy_after))
    except ValueError as e:
        text = str(e)
        raise ValueError(key + text[len("max_fps"):] if text.startswith("max_fps") else f"{key}: {text}") from None


class Control:
    """Owns the running parts and the mutable run state (paused, max_fps, shedding)."""

    def __init__(self, parts: Parts, builder: Builder, overrides: Optional[Dict[str, Any]] = None,
                 on_result: Callable[[Dict[str, Any]], None] = lambda result: None,
                 on_memory: Callable[[Any], None] = lambda health_cfg: None,
                 on_resume: Callable[[], None] = lambda: None, clock=time.monotonic) -> None:
        self.parts = parts
        self.builder = builder
        self.overrides = dict(overrides or {})
        self.on_result = on_result  # publishes a cmd/result document
        self.on_memory = on_memory  # hands the new health section to the memory guard (level kept)
        self.on_resume = on_resume  # restarts the "no frame processed" clock
        self.clock = clock
        self.paused = False
        self.requested_max_fps = float(parts.cfg.pipeline.max_fps)
        self.requested: Dict[str, Any] = {k: getattr(parts.cfg.pipeline, k) for k in ENGINE_SETTINGS}
        self.shed: Dict[str, Any] = {"active": False}
        self.config_error: Optional[str] = None
        self.status_dirty = False
        self.hup_pending = False  # set by the SIGHUP handler (no locks in a signal handler)
        self.counters = {"commands": 0, "commands_dropped": 0, "commands_rejected": 0, "reloads": 0,
                         "reloads_rejected": 0, "shed_changes": 0}
        self._lock = threading.Lock()
        self._queue: Deque[Change] = deque()
        self._external = 0
        self.on_swap: List[Callable[[Parts, Parts], None]] = []  # called after a reload swapped parts
        self.shadow: Any = None  # pipeline.shadow.ShadowRunner (app sets it): set shadow / promote

    # -- the effective state -------------------------------------------------------------
    @property
    def max_fps(self) -> float:
        """The cap in force: the requested one, lowered while shedding load."""
        if self.shed.get("active"):
            cap = float(self.parts.cfg.health.shed_max_fps)
            return min(self.requested_max_fps, cap) if self.requested_max_fps > 0 else cap
        return self.requested_max_fps

    @property
    def state(self) -> str:
        return "paused" if self.paused else "running"

    # -- enqueueing (any thread) ------------------------------------------------------------
    def _put_external(self, change: Change) -> bool:
        with self._lock:
            if self._external >= EXTERNAL_LIMIT:
                self.counters["commands_dropped"] += 1
                return False
            self._external += 1
            self._queue.append(change)
            return True

    def _put_internal(self, change: Change) -> None:
        with self._lock:  # coalesce: the newest request of a kind replaces a waiting one
            for old in [c for c in self._queue if c.kind == change.kind]:
                self._queue.remove(old)
            self._queue.append(change)

    def submit_payload(self, payload: bytes, origin: str = "mqtt") -> None:
        """An MQTT ``cmd`` payload (paho's thread): queued, or refused at once when full."""
        if not self._put_external(Change("payload", bytes(payload), origin)):
            self.on_result({"id": None, "cmd": None, "ok": False, "origin": origin,
                            "error": f"command queue full ({EXTERNAL_LIMIT} waiting); command dropped"})

    def command(self, cmd: Dict[str, Any], origin: str, timeout: float = 5.0) -> Dict[str, Any]:
        """A command from the web page / Home Assistant; waits for its result document."""
        reply = _Reply()
        ident = cmd.get("id") if isinstance(cmd, dict) else None
        name = cmd.get("cmd") if isinstance(cmd, dict) else None
        if not self._put_external(Change("command", cmd, origin, reply)):
            return {"id": ident, "cmd": name, "ok": False, "origin": origin,
                    "error": f"command queue full ({EXTERNAL_LIMIT} waiting); command dropped"}
        if not reply.event.wait(timeout):
            return {"id": ident, "cmd": name, "ok": False, "origin": origin,
                    "error": f"no result within {timeout:g} s (it stays queued and is applied between frames)"}
        return dict(reply.result or {})

    def request_reload(self) -> None:
        self._put_internal(Change("reload", origin="sighup"))

    def post_shed(self, level: str, reason: str) -> None:
        """The health thread's hand-over of a memory level change: one atomic, coalesced put."""
        self._put_internal(Change("shed", (level, reason), origin="memory"))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + int(self.hup_pending)

    # -- applying (the frame loop, between frames) -----------------------------------------
    def apply_pending(self) -> bool:
        """Apply every waiting change in arrival order; True when the status changed."""
        if self.hup_pending:
            self.hup_pending = False
            self.request_reload()
        while True:
            with self._lock:
                if not self._queue:
                    break
                change = self._queue.popleft()
                if change.kind in ("payload", "command"):
                    self._external -= 1
            self.apply(change)
        dirty, self.status_dirty = self.status_dirty, False
        return dirty

    def apply(self, change: Change) -> Optional[Dict[str, Any]]:
        """THE apply path. Never raises: a failure becomes a result / config_error."""
        try:
            return self._apply(change)
        finally:
            self._sync_shadow()

    def _sync_shadow(self) -> None:
        """The A/B shadow follows the primary's options (task, threads; its numbers restart
        when the primary's models change), whatever changed them: set, promote, shed, reload."""
        engine = self.parts.engine
        if self.shadow is None or engine is None:
            return
        try:
            self.shadow.set_primary(engine.effective_options)
        except Exception as e:  # noqa: BLE001 - the candidate must never stop the primary
            log.error("shadow: cannot follow the primary's options: %s", e)

    def _apply(self, change: Change) -> Optional[Dict[str, Any]]:
        try:
            if change.kind == "reload":
                self._reload()
                return None
            if change.kind == "shed":
                self._shed(*change.data)
                return None
            result = self._command(change)
        except Exception as e:  # noqa: BLE001 - nothing a client sends may stop the daemon
            log.exception("applying %s from %s failed", change.kind, change.origin)
            result = {"id": None, "cmd": None, "ok": False, "error": f"internal error: {type(e).__name__}: {e}"}
            if change.kind in ("reload", "shed"):
                self.config_error = f"{change.kind} failed: {type(e).__name__}: {e}"
                self.status_dirty = True
                return None
        result["origin"] = change.origin
        if not result.get("ok"):
            self.counters["commands_rejected"] += 1
        self.on_result(result)
        if change.reply is not None:
            change.reply.result = result
            change.reply.event.set()
        return result

    # -- commands --------------------------------------------------------------------------
    def _command(self, change: Change) -> Dict[str, Any]:
        from ..publish import CommandError, parse_command

        self.counters["commands"] += 1
        payload = change.data
        if change.kind == "command":
            if not isinstance(payload, dict):
                return {"id": None, "cmd": None, "ok": False,
                        "error": f"command must be a JSON object, got {type(payload).__name__}"}
            try:  # the same bytes an MQTT client would send: one validation for every origin
                payload = json.dumps(payload, allow_nan=False).encode()
            except (TypeError, ValueError) as e:
                return {"id": None, "cmd": None, "ok": False, "error": f"command is not valid JSON: {e}"}
        try:
            cmd = parse_command(payload)
        except CommandError as e:
            log.warning("rejected command from %s: %s", change.origin, e)
            return e.result()
        result: Dict[str, Any] = {"id": cmd.id, "cmd": cmd.cmd, "ok": True}
        if cmd.cmd == "pause":
            self.paused = True
        elif cmd.cmd == "resume":
            self.paused = False
            self.on_resume()
        elif cmd.cmd == "promote":
            try:
                result.update(self._promote())
            except Exception as e:  # ValueError / ModelError say why; nothing changed
                log.warning("rejected promote from %s: %s", change.origin, e)
                return {"id": cmd.id, "cmd": cmd.cmd, "ok": False, "error": str(e)}
            log.info("promote applied (%s): %s", change.origin, result.get("applied"))
        elif cmd.cmd == "set":
            try:
                result.update(self._set(dict(cmd.settings)))
            except Exception as e:  # ValueError / ModelError name the key; anything else too
                log.warning("rejected command %s from %s: %s", cmd.settings, change.origin, e)
                return {"id": cmd.id, "cmd": cmd.cmd, "ok": False, "error": str(e)}
            log.info("command applied (%s): %s", change.origin, cmd.settings)
        result["state"] = self.state
        self.status_dirty = True
        return result

    def _set(self, settings: Dict[str, Any]) -> Dict[str, Any]:
        """All or nothing: validate every key first, then apply."""
        shadow_changes = settings.pop("shadow", None)
        new_shadow = old_shadow = None
        if shadow_changes is not None and settings:
            from ..pipeline.settings import validate_all

            validate_all(dict(settings))  # the primary's keys first: a bad one changes nothing
        if shadow_changes is not None:
            if self.shadow is None:
                raise ValueError("shadow: not available in this daemon")
            from ..pipeline.shadow import validate_shadow

            old_shadow = self.shadow.settings
            new_shadow = validate_shadow(shadow_changes, old_shadow, registry=self._registry())
        if new_shadow is not None and not settings:
            self.shadow.update(new_shadow)  # loads (or releases) the candidate's models now
            return {"applied": {"shadow": _asdict(new_shadow)}, "effective": "now"}
        if new_shadow is not None:
            self.shadow.update(new_shadow)
        try:
            out = self._set_primary(settings)
        except Exception:
            if new_shadow is not None:
                self.shadow.update(old_shadow)  # all or nothing
            raise
        if new_shadow is not None:
            out["applied"]["shadow"] = _asdict(new_shadow)
        return out

    def _registry(self) -> Any:
        engine = self.parts.engine
        return getattr(engine, "registry", None) or getattr(self.shadow, "registry", None)

    def _promote(self) -> Dict[str, Any]:
        """The candidate's models become the primary's and the primary's the candidate's
        (so promote again rolls back). Loads both now; on any failure nothing changes."""
        from ..pipeline.shadow import promote_plan

        if self.shadow is None:
            raise ValueError("promote: the A/B shadow is not available in this daemon")
        old_shadow = self.shadow.settings
        to_primary, to_shadow = promote_plan(self.requested, old_shadow)
        self.builder.check_models(to_primary)
        self.shadow.update(to_shadow)
        try:
            out = self._set_primary(dict(to_primary))
        except Exception:
            self.shadow.update(old_shadow)
            raise
        out["applied"] = {"primary": dict(to_primary), "shadow": _asdict(to_shadow)}
        return out

    def _set_primary(self, settings: Dict[str, Any]) -> Dict[str, Any]:
        """All or nothing: validate every key first (the settings table, then the installed
        models through the engine), then apply."""
        from ..pipeline.settings import validate_all

        settings = validate_all(settings)  # ValueError naming the key, e.g. "unknown task 'x'; valid: ..."
        new_max = None
        if "max_fps" in settings:
            new_max = check_max_fps(settings.pop("max_fps"), self.parts.cfg.health.unhealthy_after)
        effective = "next frame"
        if settings:
            wanted = {**self.requested, **settings}
            if self.shed.get("active"):
                self.builder.check_models(settings)  # valid now, applied without the model keys
                self._update_engine(self.parts.engine, self._with_shedding(wanted))
                effective = "models after load shedding ends, the rest next frame"
            else:
                self._update_engine(self.parts.engine, wanted)
            self.requested = wanted
        if new_max is not None:
            self.requested_max_fps = new_max
        applied = dict(settings)
        if new_max is not None:
            applied["max_fps"] = new_max
        return {"applied": applied, "effective": effective}

    def _with_shedding(self, wanted: Dict[str, Any]) -> Dict[str, Any]:
        return {**wanted, **SHED_MODELS}

    @staticmethod
    def _update_engine(engine: Any, wanted: Dict[str, Any]) -> None:
        """Send only what differs from the engine's options (update validates and loads now)."""
        current = engine.effective_options
        changes = {k: v for k, v in wanted.items() if getattr(current, k, None) != v}
        if changes:
            engine.update(**changes)

    # -- load shedding ---------------------------------------------------------------------
    def _shed(self, level: str, reason: str) -> None:
        self.counters["shed_changes"] += 1
        if level == "soft" and not self.shed.get("active"):
            self.shed = {"active": True, "reason": reason, "since": time.time()}
            try:
                self._update_engine(self.parts.engine, self._with_shedding(self.requested))
            except Exception as e:  # noqa: BLE001 - fewer models are a wish, the fps cap still works
                log.warning("shedding: cannot switch to lite models: %s", e)
            self.shed["max_fps"] = self.max_fps
            log.warning("memory: %s; shedding load (max_fps %.1f, lite models)", reason, self.max_fps)
        elif level == "ok" and self.shed.get("active"):
            self.shed = {"active": False}
            try:
                self._update_engine(self.parts.engine, self.requested)
            except Exception as e:  # noqa: BLE001
                log.warning("shedding: cannot restore models: %s", e)
            log.info("memory back to normal; load shedding ended")
        self.status_dirty = True

    # -- SIGHUP reload ---------------------------------------------------------------------
    def _reject(self, why: str) -> None:
        self.counters["reloads_rejected"] += 1
        self.config_error = f"reload rejected, keeping the running config: {why}"
        log.error("%s", self.config_error)
        self.status_dirty = True

    def _reload(self) -> None:
        from ..config import ConfigError

        old = self.parts
        path = old.cfg.path
        log.info("SIGHUP: reloading %s", path)
        self.counters["reloads"] += 1
        try:
            new_cfg = self.builder.load_config(path, self.overrides)
        except ConfigError as e:
            for issue in e.issues:
                log.error("reload rejected: %s", issue)
            return self._reject(str(e).replace("\n", "; "))
        except Exception as e:  # noqa: BLE001 - PermissionError, a vanished file, ...: a config error
            return self._reject(f"{path}: {type(e).__name__}: {e}")
        try:
            check_max_fps(new_cfg.pipeline.max_fps, new_cfg.health.unhealthy_after, "pipeline.max_fps")
            check_max_fps(new_cfg.health.shed_max_fps, new_cfg.health.unhealthy_after, "health.shed_max_fps")
        except ValueError as e:
            return self._reject(str(e))
        built: List[Any] = []
        o, n = old.cfg, new_cfg
        wanted = {k: getattr(n.pipeline, k) for k in ENGINE_SETTINGS}
        effective = self._with_shedding(wanted) if self.shed.get("active") else wanted
        engine = old.engine
        try:
            grabber = old.grabber
            if n.source != o.source or n.health.stall_timeout != o.health.stall_timeout:
                grabber = self.builder.make_grabber(n)
                built.append(grabber)
            session = old.session
            if n.mqtt != o.mqtt or n.device_id != o.device_id or n.mqtt_password != o.mqtt_password \
                    or getattr(n, "homeassistant", None) != getattr(o, "homeassistant", None):
                session = self.builder.make_session(n)
                if session is not None:
                    built.append(session)
            # Last fallible step: the engine validates and loads the new models now and
            # applies them between two frames; nothing of it is in force yet.
            self._update_engine(engine, effective)
        except Exception as e:  # noqa: BLE001 - on ANY failure keep everything that runs
            for part in built:
                _close_quietly(part)
            return self._reject(f"{type(e).__name__}: {e}")
        # -- swap: from here on nothing can make the reload fail ---------------------------
        new = Parts(cfg=n, engine=engine, grabber=grabber, session=session)
        if grabber is not old.grabber:
            log.info("source changed: restarting capture")
            _stop_quietly(old.grabber)
        if session is not old.session:
            log.info("mqtt settings changed: reconnecting")
            if old.session is not None:
                _stop_quietly(old.session, STOP_FLUSH_SECONDS)
        self.parts = new
        for hook in self.on_swap:
            try:
                hook(old, new)
            except Exception as e:  # noqa: BLE001
                log.error("after reload: %s", e)
        if grabber is not old.grabber:
            grabber.start()
        if session is not old.session and session is not None:
            session.start()
        self.requested = wanted
        self.requested_max_fps = float(n.pipeline.max_fps)
        self.on_memory(n.health)
        self.config_error = None
        self.status_dirty = True
        log.info("config reloaded (hash %s)", getattr(n, "digest", ""))


def _close_quietly(part: Any) -> None:
    for name in ("close", "stop"):
        fn = getattr(part, name, None)
        if fn is not None:
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                log.debug("closing %r: %s", part, e)
            return


def _stop_quietly(part: Any, *args: Any) -> None:
    try:
        part.stop(*args)
    except Exception as e:  # noqa: BLE001 - a failing stop must not skip the rest of the swap
        log.warning("stopping %r: %s", part, e)


def _asdict(settings: Any) -> Dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(settings)
