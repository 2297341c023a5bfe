"""``/metrics`` for Prometheus, with the official ``prometheus_client``.

Two kinds of numbers:
- read from the daemon when Prometheus scrapes (a custom collector over
  ``DaemonView.stats()`` / ``status()``): frames captured / processed / dropped,
  person present, MQTT connected and reconnects, model info; RSS, CPU
  temperature and throttling come from ``health.system`` (this process);
- observed here: per-stage latency histograms, fed by a frame tap (a handful
  of ``observe`` calls per frame, about 10 us), and the web server's own request
  and analyze counters.

Its own ``CollectorRegistry``, not the library's global one, so two servers in
one test process never share series.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, Iterator, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

log = logging.getLogger(__name__)

PREFIX = "edge_holistic"
# 1 ms .. 2.5 s: a pose frame takes 5-30 ms on a Pi 5, a holistic one 40-150 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


def _num(v: Any) -> Optional[float]:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


class _DaemonCollector:
    """Reads the daemon's documents at scrape time (never from another thread's private state)."""

    def __init__(self, view: Any) -> None:
        self.view = view

    def collect(self) -> Iterator[Any]:
        from ..health.system import rss_bytes, temperature_c, throttled

        try:
            stats: Dict[str, Any] = self.view.stats() or {}
        except Exception as e:  # noqa: BLE001 - a scrape must answer even if the daemon is mid-change
            log.warning("metrics: stats unavailable: %s", e)
            stats = {}
        try:
            status: Dict[str, Any] = self.view.status() or {}
        except Exception as e:  # noqa: BLE001
            log.warning("metrics: status unavailable: %s", e)
            status = {}
        frames = stats.get("frames") or {}
        for name, key, doc in (("frames_captured", "captured", "frames read from the source"),
                               ("frames_processed", "processed_total", "frames that went through the models"),
                               ("frames_dropped", "dropped", "frames dropped before processing (newest wins)"),
                               ("frames_with_person", "with_person", "processed frames with a person found"),
                               ("process_errors", "process_errors", "frames whose processing raised")):
            value = _num(frames.get(key))
            if value is None and key == "processed_total":
                value = _num(frames.get("processed"))
            if value is not None:
                yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        for name, key, doc in (("source_stalls", "stalls", "times the source delivered nothing for stall_timeout"),
                               ("source_reopens", "reopens", "times the source was reopened")):
            value = _num(stats.get(key))
            if value is not None:
                yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        latest = None
        try:
            latest = self.view.latest()
        except Exception:  # noqa: BLE001
            pass
        yield GaugeMetricFamily(f"{PREFIX}_person_present", "1 when the last processed frame had a person",
                                value=1.0 if latest and latest.get("pose") else 0.0)
        yield GaugeMetricFamily(f"{PREFIX}_paused", "1 while processing is paused",
                                value=1.0 if stats.get("paused") or status.get("state") == "paused" else 0.0)
        mqtt = stats.get("mqtt")
        if isinstance(mqtt, dict):
            yield GaugeMetricFamily(f"{PREFIX}_mqtt_connected", "1 while the broker session is up",
                                    value=1.0 if mqtt.get("connected") else 0.0)
            for name, key, doc in (("mqtt_reconnects", "reconnects", "broker reconnections"),
                                   ("mqtt_disconnects", "disconnects", "broker disconnections"),
                                   ("mqtt_offline_dropped", "offline_dropped", "messages dropped while offline"),
                                   ("mqtt_queue_dropped", "queue_dropped", "QoS>=1 messages dropped, queue full")):
                value = _num(mqtt.get(key))
                if value is not None:
                    yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        yield GaugeMetricFamily(f"{PREFIX}_resident_memory_bytes", "resident set size of the daemon",
                                value=float(rss_bytes()))
        temp = temperature_c()
        if temp is not None:
            yield GaugeMetricFamily(f"{PREFIX}_cpu_temperature_celsius", "SoC temperature", value=float(temp))
        thr = throttled()
        if isinstance(thr, dict):
            g = GaugeMetricFamily(f"{PREFIX}_throttled", "Raspberry Pi throttling flags now set or seen since boot "
                                  "(vcgencmd get_throttled)", labels=["flag"])
            raw = str(thr.get("raw", "0x0"))
            g.add_metric(["any"], 0.0 if int(raw, 16) == 0 else 1.0)
            for flag in thr.get("flags") or []:
                g.add_metric([str(flag)], 1.0)
            yield g
        models = status.get("models") or {}
        if models:
            info = InfoMetricFamily(f"{PREFIX}_model", "models in use by the live pipeline", labels=["part"])
            for part, name in sorted(models.items()):
                info.add_metric([str(part)], {"model": str(name)})
            yield info
        cfg = {k: str(status.get(k)) for k in ("task", "pose_model", "hand_model", "precision", "version")
               if status.get(k) is not None}
        if cfg:
            yield InfoMetricFamily(f"{PREFIX}_pipeline", "live pipeline settings", value=cfg)


class WebMetrics:
    """The registry behind ``/metrics`` and the counters the web server updates."""

    def __init__(self, view: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_DaemonCollector(view))
        self.stage_latency = Histogram(f"{PREFIX}_stage_latency_seconds", "per-stage processing time of live frames",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.http_requests = Counter(f"{PREFIX}_http_requests", "HTTP requests answered", ["route", "status"],
                                     registry=self.registry)
        self.analyze = Counter(f"{PREFIX}_analyze_requests", "POST /api/analyze outcomes", ["outcome"],
                               registry=self.registry)
        self.analyze_seconds = Histogram(f"{PREFIX}_analyze_seconds", "time to analyze one upload (decode+models)",
                                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                         registry=self.registry)
        self.stream_watchers = Gauge(f"{PREFIX}_mjpeg_watchers", "open /stream.mjpg connections",
                                     registry=self.registry)
        self.stream_frames = Counter(f"{PREFIX}_mjpeg_frames_encoded", "frames drawn and JPEG-encoded for watchers",
                                     registry=self.registry)
        self._children: Dict[str, Any] = {}

    def observe_frame(self, result: Any) -> None:
        """Frame tap: per-stage latencies of one live frame (ms in the result -> seconds)."""
        for stage, ms in (getattr(result, "latency_ms", None) or {}).items():
            child = self._children.get(stage)
            if child is None:
                child = self._children[stage] = self.stage_latency.labels(stage=stage)
            child.observe(float(ms) / 1e3)

    def render(self) -> bytes:
        t0 = time.perf_counter()
        out = generate_latest(self.registry)
        log.debug("metrics rendered in %.1f ms", (time.perf_counter() - t0) * 1e3)
        return out
