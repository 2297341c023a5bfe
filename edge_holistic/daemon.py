"""``edge-holistic run``: camera -> pipeline -> message -> MQTT, supervised by systemd.

The frame loop lives in the main thread and is the only code that touches the
pipeline, so model switches (MQTT ``cmd``, SIGHUP reload, load shedding) are
queued to it and applied between two frames. Around it:

- the capture thread (``camera.FrameGrabber``) keeps the newest frame and
  reopens a stalled source with backoff;
- paho's network thread and our QoS>=1 sender (``publish.mqtt``);
- the health thread: systemd ``WATCHDOG=1`` only while frames are processed and
  no inference hangs, the memory guard, and the one-line ``STATUS=``.

Exit codes: 0 clean stop (SIGTERM/SIGINT, or end of file with ``--once``),
2 bad config or unusable model, 3 memory hard limit (systemd restarts us).
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any, Deque, Dict, Optional

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_MEMORY = 3
DEFAULT_CONFIG_PATHS = ("/etc/edge-holistic/config.yaml", "config.yaml")
LATENCY_WINDOW = 300  # frames kept per stage for p50/p95
STOP_FLUSH_SECONDS = 3.0

log = logging.getLogger("edge_holistic.daemon")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="config file (default: $EDGE_HOLISTIC_CONFIG, else /etc/edge-holistic/config.yaml "
                             "if present, else ./config.yaml)")
    parser.add_argument("--source", metavar="S",
                        help="override the source: device index or /dev/videoN, video file, image folder, "
                             "'picamera2[:N]', or a GStreamer pipeline (contains '!')")
    parser.add_argument("--mqtt-host", metavar="H", help="override mqtt.host")
    parser.add_argument("--mqtt-port", metavar="P", type=int, help="override mqtt.port")
    parser.add_argument("--device-id", metavar="ID", help="override device_id")
    parser.add_argument("--once", action="store_true",
                        help="file/images source: stop at the end instead of looping, then exit 0")
    parser.add_argument("--stdout", action="store_true",
                        help="also write each landmarks@1 message as one JSON line on stdout (logs stay on stderr)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="override log_level")


def default_config_path() -> str:
    env = os.environ.get("EDGE_HOLISTIC_CONFIG")
    if env:
        return env
    for p in DEFAULT_CONFIG_PATHS:
        if os.path.isfile(p):
            return p
    return DEFAULT_CONFIG_PATHS[-1]


def cli_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """Command-line flags as config key paths -> (value, flag); validated like file values."""
    from .camera import infer_source

    out: Dict[str, Any] = {}
    if args.source:
        for key, value in infer_source(args.source).items():
            out[f"source.{key}"] = (value, "--source")
    if args.mqtt_host:
        out["mqtt.host"] = (args.mqtt_host, "--mqtt-host")
    if args.mqtt_port is not None:
        out["mqtt.port"] = (args.mqtt_port, "--mqtt-port")
    if args.device_id:
        out["device_id"] = (args.device_id, "--device-id")
    if args.once:
        out["source.loop"] = (False, "--once")
    if args.log_level:
        out["log_level"] = (args.log_level, "--log-level")
    return out


def pipeline_options(cfg) -> Any:
    from .pipeline import PipelineOptions

    p = cfg.pipeline
    return PipelineOptions(task=p.task, pose_model=p.pose_model, hand_model=p.hand_model, precision=p.precision,
                           threads=p.threads, static_image_mode=False, smooth=p.smooth,
                           min_detection_confidence=p.min_detection_confidence,
                           min_tracking_confidence=p.min_tracking_confidence)


class LatencyWindow:
    """Recent per-stage latencies; percentiles computed only when stats are due."""

    def __init__(self, size: int = LATENCY_WINDOW) -> None:
        self.size = size
        self.stages: Dict[str, Deque[float]] = {}

    def add(self, timings: Dict[str, float]) -> None:
        for stage, ms in timings.items():
            d = self.stages.get(stage)
            if d is None:
                d = self.stages[stage] = deque(maxlen=self.size)
            d.append(float(ms))

    def summary(self) -> Dict[str, Dict[str, float]]:
        import numpy as np

        out = {}
        for stage, d in self.stages.items():
            if d:
                p50, p95 = np.percentile(np.fromiter(d, dtype=np.float64), [50, 95])
                out[stage] = {"p50": round(float(p50), 2), "p95": round(float(p95), 2)}
        return out

    def p50(self, stage: str) -> Optional[float]:
        d = self.stages.get(stage)
        if not d:
            return None
        return float(sorted(d)[len(d) // 2])


class Daemon:
    """One running daemon: owns the pipeline, the grabber, the MQTT session and the health thread."""

    def __init__(self, cfg, args: argparse.Namespace, overrides: Dict[str, Any]) -> None:
        from .health import CpuMeter, MemoryGuard, Notifier, watchdog_interval

        self.cfg = cfg
        self.args = args
        self.overrides = overrides
        self.notifier = Notifier()
        self.watchdog_every = watchdog_interval()
        self.cpu = CpuMeter()
        self.memory = MemoryGuard(cfg.health)
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.stop_event = threading.Event()
        self.stop_signal = 0  # set by the SIGTERM/SIGINT handler
        self.hup_pending = False  # set by the SIGHUP handler
        self.exit_code = EXIT_OK
        self.commands: "queue.Queue[bytes]" = queue.Queue(maxsize=32)
        self.commands_dropped = 0
        self.paused = False
        self.max_fps = cfg.pipeline.max_fps
        self.shed: Dict[str, Any] = {"active": False}
        self.shed_request: Optional[Any] = None
        self.config_error: Optional[str] = None
        self.status_dirty = False
        self.pipe = None
        self.grabber = None
        self.session = None
        self.latency = LatencyWindow()
        self.frames_processed = 0
        self.frames_with_person = 0
        self.process_errors = 0
        self.last_person = False
        self.inference_started: Optional[float] = None
        self.last_progress = time.monotonic()
        self.watchdog_state = "off" if not self.watchdog_every else "pinging"
        self.unhealthy_reason = ""
        self._stats_prev: Dict[str, Any] = {}
        self.line_fps = 0.0
        self._tty = sys.stderr.isatty()
        self.taps: list = []  # frame taps (Home Assistant person/snapshot), publisher side
        self.stdout_sink = None
        if getattr(args, "stdout", False):
            from .publish import JsonLinesSink

            self.stdout_sink = JsonLinesSink(sys.stdout)
        self._health_thread = threading.Thread(target=self._health_loop, name="health", daemon=True)

    # -- building blocks ------------------------------------------------------------------
    def _make_grabber(self):
        from .camera import FrameGrabber, make_source

        return FrameGrabber(make_source(self.cfg.source), self.cfg.health.stall_timeout).start()

    def _make_session(self):
        if not self.cfg.mqtt.enabled:
            return None
        from .publish.mqtt import MqttSession

        from .publish.homeassistant import attach

        session = MqttSession(self.cfg, self.status, self._enqueue_command)
        attach(self.cfg, session, _View(self))
        session.start()
        return session

    def sinks(self) -> list:
        """Where this frame's message goes: the MQTT session and/or JSON lines on stdout."""
        out = [self.session] if self.session is not None else []
        if self.stdout_sink is not None:
            out.append(self.stdout_sink)
        return out

    def _enqueue_command(self, payload: bytes) -> None:
        """paho thread -> main loop; bounded so a command flood cannot grow memory."""
        try:
            self.commands.put_nowait(payload)
        except queue.Full:
            self.commands_dropped += 1
            if self.session is not None:
                self.session.publish_cmd_result({"id": None, "cmd": None, "ok": False,
                                                 "error": "command queue full; command dropped"})

    # -- status / stats --------------------------------------------------------------------
    def status(self) -> Dict[str, Any]:
        """The retained ``status`` document (never contains secrets)."""
        from . import __version__
        from .runtime import backend_version, resolve_precision

        pipe = self.pipe
        opts = pipe.effective_options
        try:
            backend = backend_version()
        except Exception:  # noqa: BLE001 - status must always build
            backend = "unavailable"
        return {
            "version": __version__,
            "state": "paused" if self.paused else ("stopping" if self.stop_event.is_set() else "running"),
            "device_id": self.cfg.device_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "task": opts.task if opts else self.cfg.pipeline.task,
            "models": dict(pipe.models) if pipe is not None else {},
            "pose_model": opts.pose_model if opts else None,
            "hand_model": opts.hand_model if opts else None,
            "precision": resolve_precision(str(opts.precision)) if opts else None,
            "threads": opts.threads if opts else None,
            "max_fps": self.max_fps,
            "source": self.grabber.source.description if self.grabber is not None else None,
            "backend": backend,
            "config_hash": self.cfg.digest,
            "config_path": self.cfg.path,
            "config_error": self.config_error,
            "started": datetime.fromtimestamp(self.started_wall, timezone.utc).isoformat(timespec="seconds"),
            "start_ts": self.started_wall,
            "shed_load": dict(self.shed),
            "watchdog": self.watchdog_state,
        }

    def stats(self) -> Dict[str, Any]:
        from .health import temperature_c, throttled

        now = time.monotonic()
        g = self.grabber.counters.as_dict() if self.grabber is not None else {}
        m = self.session.counters if self.session is not None else None
        counts = {"captured": g.get("captured", 0), "processed": self.frames_processed,
                  "dropped": g.get("dropped", 0), "published": m.published if m else 0}
        prev = self._stats_prev
        dt = now - prev.get("t", self.started)
        fps = {k: round((v - prev.get(k, 0)) / dt, 2) if dt > 0 else 0.0 for k, v in counts.items()}
        self._stats_prev = {"t": now, **counts}
        return {
            "ts": time.time(),
            "uptime_s": round(now - self.started, 1),
            "interval_s": round(dt, 2),
            "fps": fps,
            "frames": {**g, "processed_total": self.frames_processed, "with_person": self.frames_with_person,
                       "process_errors": self.process_errors},
            "latency_ms": self.latency.summary(),
            "cpu_percent": self.cpu.percent(),
            "rss_mb": self.memory.rss_mb,
            "memory": {"soft_mb": round(self.memory.soft_mb, 1), "hard_mb": round(self.memory.hard_mb, 1),
                       "cgroup_max_mb": self.memory.cgroup_max_mb, "level": self.memory.level},
            "temperature_c": temperature_c(),
            "throttled": throttled(),
            "stalls": g.get("stalls", 0),
            "reopens": g.get("reopens", 0),
            "source_state": self.grabber.state if self.grabber is not None else None,
            "mqtt": None if m is None else {
                "connected": self.session.connected, "reconnects": m.reconnects, "disconnects": m.disconnects,
                "offline_dropped": m.offline_dropped, "queue_dropped": m.queue_dropped,
                "queue_len": self.session.queue_len, "rate_skipped": m.rate_skipped, "commands": m.commands,
                "commands_dropped": self.commands_dropped},
            "paused": self.paused,
            "shed_load": self.shed.get("active", False),
            "watchdog": self.watchdog_state,
        }

    def status_line(self) -> str:
        fps = self.line_fps
        p50 = self.latency.p50("total")
        broker = "off" if self.session is None else self.session.state
        src = self.grabber.state if self.grabber is not None else "-"
        parts = [f"{fps:5.1f} fps", f"{p50:5.1f} ms" if p50 is not None else "   -- ms",
                 f"person {'yes' if self.last_person else 'no '}", f"mqtt {broker}", f"source {src}"]
        if self.paused:
            parts.append("PAUSED")
        if self.shed.get("active"):
            parts.append("SHEDDING LOAD")
        return " | ".join(parts)

    # -- commands / reload / shedding (main thread) -------------------------------------
    def _handle_commands(self) -> None:
        from .publish import CommandError, parse_command
        from .runtime import ModelError

        while True:
            try:
                payload = self.commands.get_nowait()
            except queue.Empty:
                return
            try:
                cmd = parse_command(payload)
            except CommandError as e:
                log.warning("rejected command: %s", e)
                self._cmd_result(e.result())
                continue
            result: Dict[str, Any] = {"id": cmd.id, "cmd": cmd.cmd, "ok": True}
            if cmd.cmd == "pause":
                self.paused = True
            elif cmd.cmd == "resume":
                self.paused = False
                self.last_progress = time.monotonic()
            elif cmd.cmd == "set":
                changes = {k: v for k, v in cmd.settings.items() if k != "max_fps"}
                try:
                    if changes:
                        self.pipe.update(**changes)
                except (ValueError, ModelError) as e:
                    log.warning("rejected command %s: %s", cmd.settings, e)
                    self._cmd_result({"id": cmd.id, "cmd": cmd.cmd, "ok": False, "error": str(e)})
                    continue
                if "max_fps" in cmd.settings:
                    self.max_fps = cmd.settings["max_fps"]
                result["applied"] = cmd.settings
                result["effective"] = "next frame"
                log.info("command applied: %s", cmd.settings)
            result["state"] = "paused" if self.paused else "running"
            self._cmd_result(result)
            self.status_dirty = True

    def _cmd_result(self, result: Dict[str, Any]) -> None:
        if self.session is not None:
            self.session.publish_cmd_result(result)

    def _reload(self) -> None:
        """SIGHUP: re-read the config; an invalid one keeps the old and reports why."""
        from .config import ConfigError, load_config

        path = self.cfg.path
        log.info("SIGHUP: reloading %s", path)
        try:
            new = load_config(path, overrides=self.overrides)
        except ConfigError as e:
            self.config_error = f"reload rejected, keeping the running config: {e}"
            for issue in e.issues:
                log.error("reload rejected: %s", issue)
            self.status_dirty = True
            return
        old = self.cfg
        try:
            if new.pipeline != old.pipeline:
                o, n = old.pipeline, new.pipeline
                rebuild = (o.threads, o.smooth, o.min_detection_confidence, o.min_tracking_confidence) != \
                          (n.threads, n.smooth, n.min_detection_confidence, n.min_tracking_confidence)
                if rebuild:
                    from .pipeline import Pipeline

                    fresh = Pipeline(pipeline_options(new))
                    self.pipe, stale = fresh, self.pipe
                    stale.close()
                else:
                    self.pipe.update(task=n.task, pose_model=n.pose_model, hand_model=n.hand_model,
                                     precision=n.precision)
        except Exception as e:  # noqa: BLE001 - keep the running pipeline on any failure
            self.config_error = f"reload rejected, keeping the running pipeline: {e}"
            log.error("%s", self.config_error)
            self.status_dirty = True
            return
        self.cfg = new
        self.max_fps = new.pipeline.max_fps
        from .health import MemoryGuard

        self.memory = MemoryGuard(new.health)
        if new.source != old.source or new.health.stall_timeout != old.health.stall_timeout:
            log.info("source changed: restarting capture")
            self.grabber.stop()
            self.grabber = self._make_grabber()
        if new.mqtt != old.mqtt or new.device_id != old.device_id or new.mqtt_password != old.mqtt_password:
            log.info("mqtt settings changed: reconnecting")
            if self.session is not None:
                self.session.stop(STOP_FLUSH_SECONDS)
            self.session = self._make_session()
        self.config_error = None
        self.status_dirty = True
        log.info("config reloaded (hash %s)", new.digest)

    def _apply_shedding(self, level: str, reason: str) -> None:
        from .runtime import ModelError

        if level == "soft" and not self.shed.get("active"):
            opts = self.pipe.effective_options
            saved = {"max_fps": self.max_fps, "pose_model": opts.pose_model, "hand_model": opts.hand_model}
            limit = self.cfg.health.shed_max_fps
            self.max_fps = min(self.max_fps, limit) if self.max_fps > 0 else limit
            try:
                self.pipe.update(pose_model="lite", hand_model="lite")
            except (ValueError, ModelError) as e:
                log.warning("shedding: cannot switch to lite models: %s", e)
            self.shed = {"active": True, "reason": reason, "since": time.time(), "max_fps": self.max_fps,
                         "saved": saved}
            log.warning("memory: %s; shedding load (max_fps %.1f, lite models)", reason, self.max_fps)
        elif level == "ok" and self.shed.get("active"):
            saved = self.shed.get("saved", {})
            self.max_fps = saved.get("max_fps", self.cfg.pipeline.max_fps)
            try:
                self.pipe.update(pose_model=saved.get("pose_model", self.cfg.pipeline.pose_model),
                                 hand_model=saved.get("hand_model", self.cfg.pipeline.hand_model))
            except (ValueError, ModelError) as e:
                log.warning("shedding: cannot restore models: %s", e)
            self.shed = {"active": False}
            log.info("memory back to normal; load shedding ended")
        self.status_dirty = True

    # -- health thread --------------------------------------------------------------------
    def _health_loop(self) -> None:
        h = self.cfg.health
        tick = min(1.0, self.watchdog_every or 1.0)
        next_ping = 0.0
        next_mem = 0.0
        next_status = 0.0
        while not self.stop_event.wait(tick):
            now = time.monotonic()
            h = self.cfg.health
            healthy, reason = self._healthy(now)
            if self.watchdog_every:
                if healthy and now >= next_ping:
                    self.notifier.watchdog()
                    next_ping = now + self.watchdog_every
                if healthy and self.watchdog_state != "pinging":
                    log.info("healthy again; watchdog pings resumed")
                if not healthy and self.watchdog_state == "pinging":
                    log.error("unhealthy (%s): watchdog pings stopped, systemd will restart the service", reason)
                self.watchdog_state = "pinging" if healthy else "withheld"
            self.unhealthy_reason = "" if healthy else reason
            if now >= next_mem:
                next_mem = now + h.memory_check_interval
                verdict = self.memory.check()
                if verdict.level == "hard":
                    log.critical("memory: %s; exiting for systemd to restart the service", verdict.reason)
                    self.exit_code = EXIT_MEMORY
                    self.stop_event.set()
                    return
                if verdict.changed:
                    self.shed_request = (verdict.level, verdict.reason)
            if now >= next_status:
                next_status = now + 5.0
                self.notifier.status(self.status_line() + (f" | UNHEALTHY: {reason}" if not healthy else ""))

    def _healthy(self, now: float):
        limit = self.cfg.health.unhealthy_after
        started = self.inference_started
        if started is not None and now - started > limit:
            return False, f"inference running for {now - started:.0f} s"
        g = self.grabber
        if self.paused:
            age = g.last_frame_age if g is not None else 0.0
            if age > limit:
                return False, f"no frame captured for {age:.0f} s"
            return True, ""
        if now - self.last_progress > limit:
            return False, f"no frame processed for {now - self.last_progress:.0f} s"
        return True, ""

    # -- main loop --------------------------------------------------------------------------
    def _install_signals(self) -> None:
        # Handlers only set plain attributes: taking a lock (Event.set, logging) inside a
        # handler can deadlock when the signal lands while the main thread holds that lock.
        def on_stop(signum, frame):
            self.stop_signal = signum

        def on_hup(signum, frame):
            self.hup_pending = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def run(self) -> int:
        from .message import build_message, dumps
        from .pipeline import Pipeline
        from .runtime import ModelError

        self._install_signals()
        self.notifier.status("loading models")
        try:
            self.pipe = Pipeline(pipeline_options(self.cfg))
        except (ModelError, ValueError) as e:
            log.error("cannot load the pipeline: %s", e)
            self.notifier.stopping(f"model error: {e}")
            return EXIT_CONFIG
        log.info("pipeline ready: task %s, models %s", self.pipe.options.task,
                 ", ".join(f"{k}={v}" for k, v in self.pipe.models.items()))
        try:
            self.session = self._make_session()
        except (ValueError, OSError) as e:  # e.g. an unreadable TLS certificate: a config problem
            log.error("cannot set up MQTT (mqtt.tls / mqtt.username settings): %s", e)
            self.notifier.stopping(f"mqtt setup error: {e}")
            self.pipe.close()
            return EXIT_CONFIG
        self.grabber = self._make_grabber()
        self.last_progress = time.monotonic()
        self._health_thread.start()
        self.notifier.ready(f"running: {self.grabber.source.description}, task {self.pipe.options.task}")
        next_due = 0.0
        next_stats = time.monotonic() + self.cfg.health.stats_interval
        next_line = 0.0
        line_count, line_t = 0, time.monotonic()
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                if self.stop_signal:
                    log.info("%s: stopping", signal.Signals(self.stop_signal).name)
                    break
                if self.hup_pending:
                    self.hup_pending = False
                    self._reload()
                if not self.commands.empty():
                    self._handle_commands()
                if self.shed_request is not None:
                    level, reason = self.shed_request
                    self.shed_request = None
                    self._apply_shedding(level, reason)
                if self.status_dirty and self.session is not None and self.inference_started is None:
                    self.status_dirty = False
                    self.session.publish_status()
                if now >= next_stats:
                    next_stats = now + self.cfg.health.stats_interval
                    st = self.stats()
                    if self.session is not None:
                        self.session.publish_stats(st)
                    if not self._tty:
                        log.info("%s | dropped %.1f/s | stalls %d | cpu %.0f%% | rss %.0f MB",
                                 self.status_line(), st["fps"]["dropped"], st["stalls"], st["cpu_percent"],
                                 st["rss_mb"] or self.memory.check().rss_mb)
                if now >= next_line:
                    elapsed = now - line_t
                    if elapsed > 0:
                        self.line_fps = line_count / elapsed
                    line_count, line_t = 0, now
                    next_line = now + 1.0
                    if self._tty:
                        sys.stderr.write("\r\x1b[K" + self.status_line())
                        sys.stderr.flush()
                if self.max_fps > 0 and now < next_due:
                    time.sleep(min(next_due - now, 0.1))
                    continue
                frame = self.grabber.get(timeout=0.1)
                if frame is None:
                    if self.grabber.ended.is_set():
                        log.info("source ended (--once): stopping")
                        break
                    continue
                if self.paused:
                    continue
                if self.max_fps > 0:
                    next_due = max(next_due + 1.0 / self.max_fps, time.monotonic()) \
                        if next_due else time.monotonic() + 1.0 / self.max_fps
                self.inference_started = time.monotonic()
                try:
                    result = self.pipe.process(frame.rgb, frame.t_capture)
                except Exception as e:  # noqa: BLE001 - one bad frame must not end a years-long run
                    self.process_errors += 1
                    if self.process_errors <= 5 or self.process_errors % 100 == 0:
                        log.error("processing frame %d failed (%d so far): %s", frame.seq, self.process_errors, e)
                    continue
                finally:
                    self.inference_started = None
                self.last_progress = time.monotonic()
                self.frames_processed += 1
                line_count += 1
                self.last_person = result.person
                self.frames_with_person += int(result.person)
                msg = build_message(result, source=self.cfg.device_id, seq=frame.seq, ts=frame.wall_ts)
                timings = dict(result.latency_ms)
                sinks = self.sinks()
                if sinks:
                    t0 = time.perf_counter()
                    payload = dumps(msg).encode()
                    for sink in sinks:
                        sink.publish(msg, payload)
                    timings["publish"] = (time.perf_counter() - t0) * 1e3
                for tap in list(self.taps):
                    try:
                        tap(frame.rgb, result, msg)
                    except Exception as e:  # noqa: BLE001 - a tap must not stop the loop
                        log.error("frame tap failed: %s", e)
                timings["frame_age"] = (time.monotonic() - frame.t_capture) * 1e3
                self.latency.add(timings)
                if self.status_dirty and self.session is not None:
                    self.status_dirty = False
                    self.session.publish_status()  # models changed on this frame: say so
        finally:
            self._shutdown()
        return self.exit_code

    def _shutdown(self) -> None:
        self.stop_event.set()
        if self._tty:
            sys.stderr.write("\n")
        self.notifier.stopping("stopping")
        if self.grabber is not None:
            self.grabber.stop()
        if self.session is not None:
            self.session.stop(STOP_FLUSH_SECONDS)
        if self.stdout_sink is not None:
            self.stdout_sink.stop()
        if self.pipe is not None:
            self.pipe.close()
        log.info("stopped (exit code %d)", self.exit_code)


class _View:
    """The DaemonView subset Home Assistant uses, until the daemon package's own DaemonView."""

    def __init__(self, daemon: "Daemon") -> None:
        self._d = daemon

    def status(self) -> Dict[str, Any]:
        return self._d.status()

    def installed_variants(self) -> Dict[str, list]:
        reg = self._d.pipe.registry if self._d.pipe is not None else None
        if reg is None:
            return {}
        return {"pose_model": reg.variants("pose_landmark"), "hand_model": reg.variants("hand_landmark"),
                "precision": sorted({k[2] for k in reg.specs}) + ["auto"], "task": ["pose", "holistic"]}

    def command(self, cmd: Dict[str, Any], origin: str, timeout: float = 5.0) -> Dict[str, Any]:
        import json

        self._d._enqueue_command(json.dumps(cmd).encode())  # the MQTT cmd path; result on cmd/result
        return {"id": cmd.get("id"), "cmd": cmd.get("cmd"), "ok": True, "queued": True}

    def add_frame_tap(self, fn):
        self._d.taps.append(fn)
        return lambda: self._d.taps.remove(fn) if fn in self._d.taps else None


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def main(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config

    path = args.config or default_config_path()
    try:
        overrides = cli_overrides(args)
        cfg = load_config(path, overrides=overrides)
    except ValueError as e:  # --source that names nothing
        print(f"edge-holistic run: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as e:
        print(f"edge-holistic run: invalid config {path}:", file=sys.stderr)
        for issue in e.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(cfg.log_level)
    from .runtime.interpreter import fixed_mmap_threshold

    fixed_mmap_threshold()  # frames back to the kernel when freed: flat RSS over days
    log.info("edge-holistic %s starting: config %s (hash %s), device %s", _version(), path, cfg.digest,
             cfg.device_id)
    return Daemon(cfg, args, overrides).run()


def _version() -> str:
    from . import __version__

    return __version__
