"""``edge-holistic run``: wiring only. Builds the parts, starts them, stops them in order.

Rooms (see docs/daemon.md, "Architecture"):
``loop`` capture → engine.submit → publisher; ``control`` every change through one queue;
``metrics`` the counters the loop writes and the documents read from them;
``health.watchdog`` judgement, systemd pings, memory guard, thread supervision;
``view`` the facade for the web page and Home Assistant.

Exit codes: 0 clean stop (SIGTERM/SIGINT, or end of file with ``--once``),
2 bad config or unusable model, 3 memory hard limit (systemd restarts us).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, Optional

from ..config.flags import add_connection_arguments, connection_overrides, default_config_path
from ..health.system import CpuMeter
from .control import Builder, Control, Parts
from .loop import FrameLoop, Publisher
from .metrics import Metrics, engine_counts, stats_document, status_document, status_line

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_MEMORY = 3
STOP_FLUSH_SECONDS = 3.0
ENDED_FLUSH_SECONDS = 120.0  # a finite source's last frames in flight (lossless)

log = logging.getLogger("edge_holistic.daemon")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="config file (default: $EDGE_HOLISTIC_CONFIG, else /etc/edge-holistic/config.yaml "
                             "if present, else ./config.yaml)")
    parser.add_argument("--source", metavar="S",
                        help="override the source: device index or /dev/videoN, video file, image folder, "
                             "'picamera2[:N]', or a GStreamer pipeline (contains '!')")
    add_connection_arguments(parser)
    parser.add_argument("--once", action="store_true",
                        help="file/images source: stop at the end instead of looping, then exit 0")
    parser.add_argument("--stdout", action="store_true",
                        help="also write each landmarks@1 message as one JSON line on stdout (logs stay on stderr)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="override log_level")
    parser.add_argument("--http-host", metavar="H", help="override http.host (the web page's address)")
    parser.add_argument("--http-port", metavar="P", type=int, help="override http.port")


def cli_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """Command-line flags as config key paths -> (value, flag); validated like file values."""
    from ..camera import infer_source

    out: Dict[str, Any] = {}
    if args.source:
        for key, value in infer_source(args.source).items():
            out[f"source.{key}"] = (value, "--source")
    out.update(connection_overrides(args))
    if args.once:
        out["source.loop"] = (False, "--once")
    if args.log_level:
        out["log_level"] = (args.log_level, "--log-level")
    if getattr(args, "http_host", None):
        out["http.host"] = (args.http_host, "--http-host")
    if getattr(args, "http_port", None) is not None:
        out["http.port"] = (args.http_port, "--http-port")
    return out


class RealBuilder(Builder):
    """Builds the real parts; every engine shares one registry and pool and one callback."""

    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon

    def load_config(self, path, overrides):
        from ..config import load_config

        return load_config(path, overrides=overrides)

    def make_engine(self, cfg, wanted=None):
        """A live-mode engine: submit returns at once, results in frame order on the publisher."""
        from ..pipeline import Engine, EngineOptions, RunningMode
        from ..pipeline.settings import ENGINE_SETTINGS

        values = {name: getattr(cfg.pipeline, name) for name in ENGINE_SETTINGS}
        values.update(wanted or {})
        return Engine(EngineOptions(running_mode=RunningMode.LIVE, result_callback=self.d.publisher.on_result,
                                    error_callback=self.d.publisher.on_error, **values),
                      registry=self.d.registry, pool=self.d.pool)

    def make_grabber(self, cfg):
        from ..camera import FrameGrabber, make_source

        return FrameGrabber(make_source(cfg.source), cfg.health.stall_timeout)

    def make_session(self, cfg):
        if not cfg.mqtt.enabled:
            return None
        from ..publish.homeassistant import attach
        from ..publish.mqtt import MqttSession

        session = MqttSession(cfg, self.d.status, self.d.control.submit_payload)
        attach(cfg, session, self.d.view())  # HA discovery: rides on the session's connects, ends with it
        return session

    def check_models(self, changes):
        for key, role in (("pose_model", "pose_landmark"), ("hand_model", "hand_landmark")):
            if key in changes and changes[key] not in self.d.registry.variants(role):
                raise ValueError(f"unknown {role} model {changes[key]!r}; installed: "
                                 f"{', '.join(self.d.registry.variants(role))}")


class Daemon:
    """Wiring: owns nothing but references to the rooms, and the start/stop order."""

    def __init__(self, cfg, args: argparse.Namespace, overrides: Dict[str, Any]) -> None:
        from ..health import MemoryGuard, Notifier, watchdog_interval
        from ..health.watchdog import HealthThread, ThreadSupervisor

        self.args = args
        self.notifier = Notifier()
        self.cpu = CpuMeter()
        self._cpu: Dict[str, Any] = {}  # CPU meters of other stats readers (the web page)
        self.metrics = Metrics()
        self.exit_code = EXIT_OK
        self.stop_signal = 0  # set by the SIGTERM/SIGINT handler (plain attribute: no locks in handlers)
        self.stop_cause: Optional[str] = None
        self.stopping = False
        self.registry = None
        self.pool = None
        self._tty = sys.stderr.isatty()
        self.stdout_sink = None
        if getattr(args, "stdout", False):
            from ..publish import JsonLinesSink

            self.stdout_sink = JsonLinesSink(sys.stdout)
        self.builder = RealBuilder(self)
        self.control = Control(Parts(cfg=cfg, engine=None, grabber=None, session=None), self.builder, overrides,
                               on_result=self._publish_cmd_result, on_memory=self._memory_reconfigured,
                               on_resume=self.metrics.progress)
        self.publisher = Publisher(self.metrics, self._sinks, lambda: self.control.parts.cfg.device_id,
                                   on_models=lambda models: self._mark_status(),
                                   on_death=self.metrics.thread_died)
        self.supervisor = ThreadSupervisor(self.metrics.thread_died)
        self.health_thread = HealthThread(
            self.notifier, watchdog_interval(), self.readings, MemoryGuard(cfg.health),
            lambda: self.control.parts.cfg.health.memory_check_interval, self.control.post_shed,
            self._memory_hard, lambda: status_line(self.metrics, self.control, self.health_thread.last, "systemd"),
            self.metrics.thread_died)
        self.health_thread.on_change = self._mark_status
        self._status_due = False
        self._next_stats = 0.0
        self.shadow = None  # pipeline.shadow.ShadowRunner, built with the engine
        self._shadow_published = False  # a retained shadow document is on the broker
        self._engine_done = 0
        self.web = None

    # -- the documents (DaemonView reads these) -------------------------------------------
    def health(self):
        from ..health.watchdog import judge

        return judge(self.readings())

    def status(self) -> Dict[str, Any]:
        import dataclasses

        doc = status_document(self.metrics, self.control, self.health_thread.state, self.health(), self.stopping)
        # the A/B shadow's settings in force (what promote would swap in), null before start
        doc["shadow"] = dataclasses.asdict(self.shadow.settings) if self.shadow is not None else None
        return doc

    def stats(self, reader: str = "mqtt") -> Dict[str, Any]:
        """The ``stats`` document; rates (fps, CPU) are per ``reader`` since its previous call."""
        cpu = self._cpu.setdefault(reader, CpuMeter()) if reader != "mqtt" else self.cpu
        doc = stats_document(self.metrics, self.control, self.health_thread.memory, cpu.percent(),
                             self.health_thread.state, self.health(), self.publisher.backlog, reader)
        doc["shadow"] = self.shadow.summary() if self.shadow is not None else None  # shadow@1, or null
        return doc

    def installed_variants(self) -> Dict[str, list]:
        from ..pipeline.settings import PRECISIONS, TASKS
        from ..runtime import resolve_precision

        reg = self.registry
        if reg is None:
            return {"pose_model": [], "hand_model": [], "precision": [], "task": list(TASKS)}
        pose = reg.variants("pose_landmark")
        have = {prec for (role, variant, prec) in reg.specs if role == "pose_landmark"}
        # "auto" is offered when what it resolves to here is installed.
        precision = [p for p in PRECISIONS if resolve_precision(p) in have]
        return {"pose_model": pose, "hand_model": reg.variants("hand_landmark"), "precision": precision,
                "task": list(TASKS)}

    def view(self):
        from .view import DaemonView

        return DaemonView(self)

    def readings(self):
        from ..health.watchdog import Readings

        now = time.monotonic()
        parts = self.control.parts
        g = parts.grabber
        dead, critical = ((), ()) if self.stopping else self.supervisor.check()
        # A frame the engine failed on is progress too: the process is not wedged, and a
        # source sending only bad frames must not become a restart loop (counted instead).
        counts = engine_counts(parts.engine) if parts.engine is not None else {}
        done = counts.get("completed", 0) + counts.get("failed", 0)
        if done != self._engine_done:
            self._engine_done = done
            self.metrics.progress()
        h = parts.cfg.health
        return Readings(
            unhealthy_after=h.unhealthy_after, stall_timeout=h.stall_timeout, paused=self.control.paused,
            source_state=g.state if g is not None else "starting",
            source_error=g.last_error if g is not None else "",
            last_frame_age=g.last_frame_age if g is not None else 0.0,
            progress_age=now - self.metrics.last_progress, loop_age=now - self.metrics.loop_tick,
            dead_threads=dead, critical_dead=critical,
            memory_level=self.health_thread.memory.level)

    # -- callbacks -----------------------------------------------------------------------
    def _sinks(self) -> list:
        session = self.control.parts.session
        out = [session] if session is not None else []
        if self.stdout_sink is not None:
            out.append(self.stdout_sink)
        return out

    def _publish_cmd_result(self, result: Dict[str, Any]) -> None:
        session = self.control.parts.session
        if session is not None:
            session.publish_cmd_result(result)

    def _memory_reconfigured(self, health_cfg) -> None:
        self.health_thread.set_memory(self.health_thread.memory.reconfigured(health_cfg))

    def _memory_hard(self, reason: str) -> None:
        log.critical("memory: %s; exiting for systemd to restart the service", reason)
        self.exit_code = EXIT_MEMORY
        self.stop_cause = "memory"

    def _mark_status(self) -> None:
        self._status_due = True

    def _stop_reason(self) -> Optional[str]:
        if self.stop_signal:
            name = signal.Signals(self.stop_signal).name
            log.info("%s: stopping", name)
            return name
        if not self.health_thread.thread.is_alive() and self.health_thread.thread.ident is not None \
                and self.stop_cause is None:
            self.health_thread.restart()  # its death was logged and counted by its wrapper
        return self.stop_cause

    def _report(self, now: float, changed: bool) -> None:
        """Status when something changed, stats every stats_interval (frame loop thread)."""
        parts = self.control.parts
        if changed or self._status_due:
            self._status_due = False
            if parts.session is not None:
                parts.session.publish_status()
        if now >= self._next_stats:
            self._next_stats = now + parts.cfg.health.stats_interval
            st = self.stats()
            if parts.session is not None:
                parts.session.publish_stats(st)
                self._publish_shadow(parts.session, st.get("shadow"))
            if not self._tty:
                log.info("%s | dropped %.1f/s | stalls %d | cpu %.0f%% | rss %.0f MB",
                         status_line(self.metrics, self.control, self.health_thread.last, "log"), st["fps"]["dropped"],
                         st["stalls"], st["cpu_percent"], st["rss_mb"])

    def _publish_shadow(self, session, doc: Optional[Dict[str, Any]]) -> None:
        """The retained ``shadow`` topic: the shadow@1 summary on the stats cadence; an empty
        retained message clears it when the shadow is disabled."""
        import json

        topic = f"{self.control.parts.cfg.topic_base}/shadow"
        if doc is not None:
            session.send(topic, json.dumps(doc, separators=(",", ":"), allow_nan=False).encode(), qos=1, retain=True)
            self._shadow_published = True
        elif self._shadow_published:
            session.send(topic, b"", qos=1, retain=True)
            self._shadow_published = False

    def _start_shadow(self, cfg, engine) -> None:
        """The A/B candidate (pipeline.shadow): its own engine on its own thread, fed by a
        frame tap after each message went out; models through the shared pool."""
        import dataclasses

        from ..pipeline.shadow import ShadowRunner, ShadowSettings

        self.shadow = ShadowRunner(ShadowSettings(**dataclasses.asdict(cfg.pipeline.shadow)),
                                   engine.effective_options, self.pool)
        self.control.shadow = self.shadow
        self.publisher.add_tap(lambda rgb, result, msg: self.shadow.offer(rgb, result))

        def on_reload(old, new) -> None:
            if new.cfg.pipeline.shadow != old.cfg.pipeline.shadow:
                self.shadow.update(ShadowSettings(**dataclasses.asdict(new.cfg.pipeline.shadow)))
                log.info("shadow settings reloaded: %s", dataclasses.asdict(new.cfg.pipeline.shadow))

        self.control.on_swap.append(on_reload)
        if self.shadow.enabled:
            log.info("A/B shadow: %s", self.shadow.summary()["b"]["label"])

    def _web_on_reload(self, old, new) -> None:
        """A reload that changed the http section or the token file's contents restarts the page
        on the new settings (a new port, host or token takes effect without a restart of the
        daemon; open streams reconnect). If the new page cannot start (port taken, bad token
        file), the old one comes back, and the error is logged either way."""
        stamp = _web_stamp(new.cfg)
        if stamp == self._web_stamp:
            return
        log.info("http settings changed: restarting the web page")
        if self.web is not None:
            self.web.stop()
        self.web = start_web_page(self.view(), new.cfg)
        if self.web is None and new.cfg.http.enabled and old.cfg.http.enabled:
            log.error("web page: keeping the previous http settings (%s:%d)", old.cfg.http.host, old.cfg.http.port)
            self.web = start_web_page(self.view(), old.cfg)
            return  # the stamp stays: the next reload tries the new settings again
        self._web_stamp = stamp

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """What SIGTERM does; for an embedding caller (tests) that runs the daemon in a thread."""
        self.stop_signal = signum

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.debug("not the main thread: no signal handlers (stop with request_stop())")
            return

        def on_stop(signum, frame):
            self.stop_signal = signum

        def on_hup(signum, frame):
            self.control.hup_pending = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)
        if _EARLY_STOP and not self.stop_signal:
            self.stop_signal = _EARLY_STOP[0]

    # -- start / run / stop ------------------------------------------------------------------
    def run(self) -> int:
        from ..runtime import ModelError, Registry
        from ..runtime.pool import ModelPool

        self._install_signals()
        cfg = self.control.parts.cfg
        self.notifier.status("loading models")
        try:
            self.registry = Registry()
            self.pool = ModelPool(self.registry)
            engine = self.builder.make_engine(cfg)
        except (ModelError, ValueError) as e:
            log.error("cannot load the pipeline: %s", e)
            self.notifier.stopping(f"model error: {e}")
            return EXIT_CONFIG
        log.info("pipeline ready: task %s, models %s", engine.effective_options.task,
                 ", ".join(f"{k}={v}" for k, v in engine.models.items()))
        try:
            self._start_shadow(cfg, engine)
        except (ModelError, ValueError) as e:
            log.error("cannot load the shadow models (pipeline.shadow): %s", e)
            self.notifier.stopping(f"model error: {e}")
            engine.close()
            return EXIT_CONFIG
        try:
            session = self.builder.make_session(cfg)
            grabber = self.builder.make_grabber(cfg)
        except (ValueError, OSError) as e:  # e.g. an unreadable TLS certificate: a config problem
            log.error("cannot set up MQTT or the source (mqtt.tls / mqtt.username / source settings): %s", e)
            self.notifier.stopping(f"setup error: {e}")
            engine.close()
            return EXIT_CONFIG
        self.control.parts = Parts(cfg=cfg, engine=engine, grabber=grabber, session=session)
        self.publisher.start()
        if session is not None:
            session.start()
        grabber.start()
        self.metrics.progress()
        self.supervisor.watch("publisher", lambda: self.publisher.thread)
        self.supervisor.watch("capture", lambda: _running_thread(self.control.parts.grabber))
        for name in ("mqtt-network", "mqtt-sender"):
            self.supervisor.watch(name, lambda n=name: _session_thread(self.control.parts.session, n))
        self.health_thread.start()
        self.web = start_web_page(self.view(), cfg)
        self._web_stamp = _web_stamp(cfg)
        self.control.on_swap.append(self._web_on_reload)
        self.notifier.ready(f"running: {grabber.source.description}, task {engine.effective_options.task}")
        loop = FrameLoop(self.control, self.metrics, self.publisher, self._report, self._stop_reason,
                         tty_line=(lambda: status_line(self.metrics, self.control, self.health_thread.last, "tty"))
                         if self._tty else None)
        try:
            if loop.run() == "ended":
                # --once on a file: every frame taken was promised an output, however slow the
                # engine is. (A signal stops within the documented bound instead.)
                self.control.parts.engine.flush(ENDED_FLUSH_SECONDS)
                self.publisher.drain(ENDED_FLUSH_SECONDS)
        finally:
            self._shutdown()
        return self.exit_code

    def _shutdown(self) -> None:
        """Capture first, then let frames in flight reach the sinks, then the sinks."""
        self.stopping = True
        if self._tty:
            sys.stderr.write("\n")
        self.notifier.stopping("stopping")
        parts = self.control.parts
        for step, fn in (("web", lambda: self.web and self.web.stop()),
                         ("capture", lambda: parts.grabber and parts.grabber.stop()),
                         ("engine flush", lambda: parts.engine and parts.engine.flush(STOP_FLUSH_SECONDS)),
                         ("publisher", lambda: self.publisher.stop(STOP_FLUSH_SECONDS)),
                         ("mqtt", lambda: parts.session and parts.session.stop(STOP_FLUSH_SECONDS)),
                         ("stdout", lambda: self.stdout_sink and self.stdout_sink.stop()),
                         ("engine", lambda: parts.engine and parts.engine.close()),
                         ("shadow", lambda: self.shadow and self.shadow.close()),
                         ("health", lambda: self.health_thread.stop())):
            try:  # one failing step must not skip the others (a device left open, no 'stopped')
                fn()
            except Exception as e:  # noqa: BLE001
                log.error("stopping %s: %s", step, e)
        log.info("stopped (exit code %d)", self.exit_code)


def start_web_page(view, cfg):
    """The web page and HTTP API (http section), or None. A page that cannot start (port taken,
    unreadable token) is logged and the daemon runs on without it: publishing matters more."""
    if not cfg.http.enabled:
        return None
    from ..web import start_web
    from ..web.auth import TokenError
    from ..web.server import WebStartError

    p = cfg.pipeline
    defaults = {"task": p.task, "pose_model": p.pose_model, "hand_model": p.hand_model, "precision": p.precision}
    try:
        return start_web(view, cfg.http, defaults)
    except (WebStartError, TokenError) as e:
        log.error("web page not started: %s", e)
        return None


def _web_stamp(cfg) -> tuple:
    """What the running page was started from: the http section and its token file's (mtime, size)."""
    token = cfg.http.token_file
    try:
        st = os.stat(token) if token else None
    except OSError:
        st = None
    return (cfg.http, (st.st_mtime_ns, st.st_size) if st else None)


def _running_thread(grabber) -> Optional[threading.Thread]:
    """The capture thread while it is meant to run (it ends by itself when a finite source ends)."""
    if grabber is None or grabber.state in ("ended", "stopped") or grabber.ended.is_set():
        return None
    return grabber.thread


def _session_thread(session, name: str) -> Optional[threading.Thread]:
    if session is None:
        return None
    threads = getattr(session, "threads", None)
    return threads().get(name) if callable(threads) else None


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


_EARLY_STOP: list = []  # signals that arrived before Daemon._install_signals


def main(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..config import ConfigError, load_config

    # SIGTERM before the daemon's own handlers exist (imports, config, models: seconds on a Pi)
    # must still mean a clean stop, not death by the default action.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: _EARLY_STOP.append(signum))
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
    from ..runtime.interpreter import fixed_mmap_threshold

    fixed_mmap_threshold()  # frames back to the kernel when freed: flat RSS over days
    log.info("edge-holistic %s starting: config %s (hash %s), device %s", __version__, path, cfg.digest,
             cfg.device_id)
    return Daemon(cfg, args, overrides).run()
