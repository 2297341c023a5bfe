"""The A/B shadow: a candidate model set run on a sample of the primary's frames, never published.

Why: a user who wants INT8 or the lite models wants to see what they cost in accuracy on
*their* camera and scene before switching, and to roll back by measurement. The shadow
runs the candidate on every ``every``-th frame the primary processed and compares the two
(:mod:`.agreement`); ``promote`` swaps the two model sets.

Off the publishing path: :meth:`ShadowRunner.offer` is called on the daemon's publisher
thread (a frame tap) after the frame's message went out; it only counts, checks the CPU
ceiling and puts the frame into a small bounded queue (``put_nowait``, at most one sampling
run of ``RUN`` frames; a frame offered while the queue is full is dropped and counted). The
candidate runs on its own worker thread, so the published stream is never delayed,
reordered or changed.

Own tracking, not the primary's ROIs (decision, see docs/shadow.md): the candidate is a
complete engine in video mode with its own detector, ROI tracking and smoothing, fed the
sampled frames. What a user promotes is a whole model set, detectors included (an int8
candidate has int8 detectors too), and found / lost / presence flips only mean something
when the candidate can lose the person on its own. Reusing the primary's crops would also
need the engine's per-frame ROIs, which are internal tracking state and not part of its
results. The price: with ``every`` > 1 the candidate tracks at fps/every, so some of the
distance is the lower tracking rate, not the models; docs/shadow.md measures that baseline
(identical models, every: 10) so it can be told apart.

Models come from the daemon's shared pool in a namespace of their own (``Engine(namespace=)``:
own interpreters even for the same model, never marked idle by the primary): loaded when
the shadow is enabled, released at once when it is disabled
(:meth:`~edge_holistic.runtime.pool.ModelPool.drop_namespace`).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from . import settings as _settings
from .agreement import DEFAULT_WINDOW, AgreementAccumulator, side_description
from .types import FrameResult

log = logging.getLogger(__name__)

POOL_SCOPE = "shadow"
# Sampling in short runs: the candidate gets RUN consecutive frames out of every RUN * every
# (the same 1/every share of frames), and the first WARMUP of a run are computed but not
# compared, while its tracking and smoothing catch up with a scene it last saw RUN * every
# frames ago. Measured on the committed clip (3 passes, 300 frames), identical models, every
# 10, holistic: single frames 1 in 10 -> pose median 1.9 % / p90 41.8 %, left hand found
# agreement 0.63; runs of 5 with 2 warm-up -> pose 0.65 % / 3.8 %, face 0.03 %, left hand
# 0.12 %, agreement 1.0 everywhere. With every: 1 there are no gaps and no warm-up.
RUN = 5
WARMUP = 2
# After the primary's options change, results still carrying its old model names are the
# frames that were in flight (engine max_in_flight 3 + the publisher queue 8); a change that
# leaves the names alone (threads, or a hand model under task pose) must not skip for ever.
STALE_FRAMES = 12
CPU_SAMPLE_S = 1.0  # the ceiling is checked against the CPU share over about the last second


@dataclass(frozen=True)
class ShadowSettings:
    """``pipeline.shadow`` in the config and ``{"cmd": "set", "shadow": {...}}``."""

    enabled: bool = False
    pose_model: str = "lite"
    hand_model: str = "lite"
    precision: str = "int8"
    every: int = 10
    max_cpu_percent: float = 80.0


# key -> (kind, rule, help); the config schema's ShadowConfig carries the same rules.
SHADOW_KEYS: Dict[str, Tuple[str, Any, str]] = {
    "enabled": ("bool", None, "run the candidate model set beside the primary"),
    "pose_model": ("setting", None, "candidate pose landmark model: lite | full | heavy (if installed)"),
    "hand_model": ("setting", None, "candidate hand landmark model (holistic): lite | full"),
    "precision": ("setting", None, "candidate precision: float | int8 | auto"),
    "every": ("int", (1, 10000), "run the candidate on every Nth processed frame"),
    "max_cpu_percent": ("float", (0.0, 100.0), "skip the candidate while the daemon's CPU use (% of all cores) "
                                               "is above this; 0 = no ceiling"),
}


def validate_shadow(changes: Mapping[str, Any], base: ShadowSettings = ShadowSettings(),
                    registry: Any = None, task: str = "holistic", prefix: str = "shadow") -> ShadowSettings:
    """``base`` with ``changes`` applied, or ``ValueError`` naming the bad key (``shadow.every``).

    With a ``registry`` the model names are checked against what is installed (for a task
    ``pose`` the hand model too: a later switch to holistic must not find it missing).
    """
    if not isinstance(changes, Mapping):
        raise ValueError(f"{prefix} must be an object of settings, got {type(changes).__name__}")
    unknown = sorted(set(changes) - set(SHADOW_KEYS))
    if unknown:
        raise ValueError(f"{prefix}.{unknown[0]}: unknown key; valid: {', '.join(SHADOW_KEYS)}")
    out: Dict[str, Any] = {}
    for key, value in changes.items():
        kind, rule, _ = SHADOW_KEYS[key]
        where = f"{prefix}.{key}"
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{where} must be true or false, got {value!r}")
        elif kind == "setting":  # the pipeline settings table's own rule for this name
            if not isinstance(value, str):
                raise ValueError(f"{where} must be a string, got {value!r}")
            try:
                value = _settings.validate(key, value)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        else:
            lo, hi = rule
            ok = not isinstance(value, bool) and isinstance(value, (int, float))
            if ok and kind == "int":
                ok = float(value).is_integer()
            if not ok or not lo <= value <= hi:
                what = "an integer" if kind == "int" else "a number"
                raise ValueError(f"{where} must be {what} in [{lo:g}, {hi:g}], got {value!r}")
            value = int(value) if kind == "int" else float(value)
        out[key] = value
    new = replace(base, **out)
    if registry is not None:
        check_installed(new, registry, prefix)
    return new


def check_installed(s: ShadowSettings, registry: Any, prefix: str = "shadow") -> None:
    """The candidate's model names and precision against the registry; ValueError naming the key."""
    from ..runtime import resolve_precision

    precision = resolve_precision(s.precision)
    for key, role in (("pose_model", "pose_landmark"), ("hand_model", "hand_landmark")):
        variant = getattr(s, key)
        valid = registry.variants(role)
        if variant not in valid:
            raise ValueError(f"{prefix}.{key}: unknown {role} model {variant!r}; installed: {', '.join(valid)}")
        have = registry.precisions(role, variant)
        if precision not in have:
            raise ValueError(f"{prefix}.precision: no {precision} build of {role} {variant!r}; "
                             f"installed: {', '.join(have)}")


def promote_plan(primary: Any, shadow: ShadowSettings) -> Tuple[Dict[str, str], ShadowSettings]:
    """``promote``: the primary takes the candidate's models, the candidate the primary's.

    Returns (changes for the primary engine's ``update``, the new shadow settings). Applying
    the plan twice returns to the start, which is the roll-back.
    """
    def get(key: str) -> str:
        return str(primary[key] if isinstance(primary, Mapping) else getattr(primary, key))

    if not shadow.enabled:
        raise ValueError("promote needs an enabled shadow (pipeline.shadow.enabled, or "
                         "{\"cmd\": \"set\", \"shadow\": {\"enabled\": true}})")
    to_primary = {"pose_model": shadow.pose_model, "hand_model": shadow.hand_model, "precision": shadow.precision}
    to_shadow = replace(shadow, pose_model=get("pose_model"), hand_model=get("hand_model"),
                        precision=get("precision"))
    return to_primary, to_shadow


def side_label(task: str, pose_model: str, hand_model: str, precision: str) -> str:
    hand = f"/{hand_model}" if task == "holistic" else ""
    return f"{pose_model}{hand}@{precision}"


class _CpuShare:
    """This process's CPU use as % of all cores (the health module's CpuMeter, whose 100 is one
    core, divided by the cores this process may use), refreshed at most once per ``CPU_SAMPLE_S``
    so a ceiling check per offered frame costs a clock read."""

    def __init__(self) -> None:
        import os

        from ..health.system import CpuMeter

        self._meter = CpuMeter()
        self._cores = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        self._next = time.monotonic() + CPU_SAMPLE_S
        self.value = 0.0

    def percent(self) -> float:
        now = time.monotonic()
        if now >= self._next:
            self.value = self._meter.percent() / self._cores
            self._next = now + CPU_SAMPLE_S
        return self.value


EngineFactory = Callable[[Dict[str, Any], Any, str], Any]


def default_engine_factory(options: Dict[str, Any], pool: Any, namespace: str) -> Any:
    """A candidate engine in video mode, one frame at a time on the caller's thread."""
    from .engine import Engine, EngineOptions, RunningMode

    return Engine(EngineOptions(running_mode=RunningMode.VIDEO, schedule="inline", **options), pool=pool,
                  namespace=namespace)


def _detect(engine: Any, rgb: Any, ts: float) -> FrameResult:
    fn = getattr(engine, "detect_for_video", None)
    return fn(rgb, ts) if fn is not None else engine.process(rgb, ts)


class ShadowRunner:
    """Owns the candidate engine, its worker thread and the agreement numbers.

    ``primary`` is anything with the primary engine's option attributes (``task``,
    ``pose_model``, ``hand_model``, ``precision``, ``threads``, ``smooth``,
    ``min_detection_confidence``, ``min_tracking_confidence``). Thread use: ``offer`` from
    the publisher thread, ``update`` / ``set_primary`` / ``summary`` from any thread.
    """

    def __init__(self, settings: ShadowSettings, primary: Any, pool: Any,
                 engine_factory: Optional[EngineFactory] = None, window: int = DEFAULT_WINDOW,
                 cpu_percent: Optional[Callable[[], float]] = None) -> None:
        self._pool = pool
        self.registry = pool.registry
        self._factory = engine_factory or default_engine_factory
        self._window = window
        self._cpu = cpu_percent or _CpuShare().percent
        self._lock = threading.Lock()  # settings, accumulator, counters
        self._run_lock = threading.Lock()  # held while the candidate computes or is swapped
        self._slot: "queue.Queue[Optional[tuple]]" = queue.Queue(maxsize=RUN)
        self._primary = self._primary_options(primary)
        self._settings = ShadowSettings()
        self._engine: Any = None
        self._namespace = ""
        self._gen = 0
        self._n = 0
        self._busy = 0  # frames queued or being computed (flush waits for 0)
        self._run_skipped = False
        self._rewarm = 0  # frames still to treat as warm-up after a dropped one
        self._stale_models: Optional[Dict[str, str]] = None  # primary models from before a change
        self._stale_left = 0
        self._last_ts = float("-inf")
        self._acc: Optional[AgreementAccumulator] = None
        self._worker: Optional[threading.Thread] = None
        self._closed = False
        self.update(settings)

    # -- settings ---------------------------------------------------------------------------
    @staticmethod
    def _primary_options(primary: Any) -> Dict[str, Any]:
        keys = ("task", "pose_model", "hand_model", "precision", "threads", "smooth",
                "min_detection_confidence", "min_tracking_confidence")
        if isinstance(primary, Mapping):
            return {k: primary[k] for k in keys if k in primary}
        return {k: getattr(primary, k) for k in keys if hasattr(primary, k)}

    @property
    def settings(self) -> ShadowSettings:
        with self._lock:
            return self._settings

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def _candidate_options(self, s: ShadowSettings) -> Dict[str, Any]:
        o = dict(self._primary)
        o.update(pose_model=s.pose_model, hand_model=s.hand_model, precision=s.precision)
        return o

    def _sides(self, s: ShadowSettings) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        from ..runtime import resolve_precision

        p, task = self._primary, self._primary.get("task", "pose")
        a = side_description(side_label(task, p["pose_model"], p["hand_model"], resolve_precision(str(p["precision"]))),
                             p)
        c = self._candidate_options(s)
        b = side_description(side_label(task, c["pose_model"], c["hand_model"], resolve_precision(str(c["precision"]))),
                             c)
        return a, b

    def update(self, settings: ShadowSettings) -> ShadowSettings:
        """Apply new settings now: a new candidate is built (its models load here, on the
        caller's thread) before the old one is closed; disabling releases its models.
        On an error (a model that will not load) nothing changes and the error is raised."""
        with self._lock:
            old = self._settings
        models_changed = (settings.pose_model, settings.hand_model, settings.precision) != \
                         (old.pose_model, old.hand_model, old.precision)
        if settings.enabled and (self._engine is None or models_changed):
            self._swap_engine(settings)
        elif not settings.enabled and self._engine is not None:
            self._swap_engine(None)
        with self._lock:
            self._settings = settings
            if settings.enabled and (self._acc is None or models_changed or settings.every != old.every):
                a, b = self._sides(settings)
                self._acc = AgreementAccumulator(self._primary.get("task", "pose"), a, b, window=self._window,
                                                 every=settings.every)
                self._n = 0
            elif not settings.enabled:
                self._acc = None
        if settings.enabled:
            self._ensure_worker()
        return settings

    def set_primary(self, primary: Any) -> None:
        """The primary's options changed (set, promote, shedding, reload): the candidate
        follows its task, threads and thresholds, and the numbers start over."""
        new = self._primary_options(primary)
        if new == self._primary:
            return
        rebuild = {k: v for k, v in new.items() if k not in ("pose_model", "hand_model", "precision")} != \
                  {k: v for k, v in self._primary.items() if k not in ("pose_model", "hand_model", "precision")}
        self._primary = new
        s = self.settings
        if s.enabled and rebuild:
            self._swap_engine(s)
        with self._lock:
            if self._acc is not None:
                # Frames still in flight in the primary carry its old models: not compared.
                self._stale_models = dict(self._acc.a.get("models") or {}) or None
                self._stale_left = STALE_FRAMES
                a, b = self._sides(s)
                self._acc.reset(a=a, b=b, task=new.get("task"))

    def _swap_engine(self, settings: Optional[ShadowSettings]) -> None:
        new_engine = None
        new_ns = ""
        if settings is not None:
            # A fresh namespace per candidate: the old one keeps computing until the swap.
            new_ns = f"{POOL_SCOPE}{self._gen + 1}"
            try:
                new_engine = self._factory(self._candidate_options(settings), self._pool, new_ns)
            except Exception:
                self._pool.drop_namespace(new_ns)
                raise
        with self._run_lock:  # waits for a candidate frame in progress (never the publisher)
            old_engine, old_ns = self._engine, self._namespace
            self._engine, self._namespace = new_engine, new_ns
            with self._lock:
                self._gen += 1
        if old_engine is not None:
            try:
                old_engine.close()
            finally:
                released = self._pool.drop_namespace(old_ns)
                if released:
                    log.info("shadow: released %s", ", ".join(released))

    # -- frames -------------------------------------------------------------------------------
    def offer(self, rgb: Any, result: FrameResult, timestamp: Optional[float] = None) -> None:
        """Publisher thread, once per published frame: cheap, never blocks.

        ``timestamp``: the frame's time in seconds; default: the one the primary computed the
        frame with (``result.timestamp``), else now. Identical timestamps matter: with the
        daemon's wall-clock message time instead of the engine's monotonic capture time (a few
        µs apart) an identical candidate differed by 0.1 % median on the clip."""
        if timestamp is None:
            timestamp = getattr(result, "timestamp", None)
        with self._lock:
            s, acc = self._settings, self._acc
            if not s.enabled or acc is None or self._closed:
                return
            k = self._n % (RUN * s.every)  # position in the sampling period
            self._n += 1
            if k >= RUN:
                return
            if k == 0:  # a run starts: the CPU ceiling decides for the whole run
                self._run_skipped = s.max_cpu_percent > 0 and self._cpu() > s.max_cpu_percent
            acc.counters["offered"] += 1
            if self._run_skipped:
                acc.counters["skipped_cpu"] += 1
                return
            warm = (s.every > 1 and k < WARMUP) or self._rewarm > 0
            self._rewarm = max(0, self._rewarm - 1)
            gen = self._gen
            self._busy += 1
        try:
            self._slot.put_nowait((gen, rgb, result, time.monotonic() if timestamp is None else float(timestamp), warm))
        except queue.Full:
            with self._lock:
                self._busy -= 1
                self._rewarm = WARMUP  # a gap in the candidate's tracking: let it catch up again
                if self._acc is acc:
                    acc.counters["dropped"] += 1

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._loop, name="shadow", daemon=True)
            self._worker.start()

    def _loop(self) -> None:
        while True:
            item = self._slot.get()
            if item is None:
                return
            try:
                self._compare(*item)
            finally:
                with self._lock:
                    self._busy -= 1

    def _compare(self, gen: int, rgb: Any, primary_result: FrameResult, ts: float, warm: bool) -> None:
        with self._run_lock:
            with self._lock:
                if gen != self._gen or self._engine is None:
                    return  # offered before a change: it belongs to other models
                if self._stale_models is not None:
                    if dict(primary_result.models) == self._stale_models and self._stale_left > 0:
                        self._stale_left -= 1
                        return  # the primary computed it with its models from before a change
                    self._stale_models = None
                ts = max(ts, self._last_ts + 1e-6)  # the engine refuses non-increasing timestamps
                self._last_ts = ts
            try:
                result = _detect(self._engine, rgb, ts)
            except Exception as e:  # noqa: BLE001 - the candidate must never take the daemon down
                with self._lock:
                    if self._acc is not None:
                        self._acc.counters["errors"] += 1
                        n = self._acc.counters["errors"]
                    else:
                        n = 1
                if n <= 5 or n % 100 == 0:
                    log.error("shadow: candidate failed on a frame (%d so far): %s", n, e)
                return
        with self._lock:
            if gen == self._gen and self._acc is not None and warm:
                self._acc.counters["warmup"] += 1
            elif gen == self._gen and self._acc is not None:
                try:
                    self._acc.add(primary_result, result)
                except ValueError as e:  # e.g. a frame size change between the two
                    self._acc.counters["errors"] += 1
                    log.warning("shadow: cannot compare a frame: %s", e)

    def summary(self) -> Optional[Dict[str, Any]]:
        """The ``shadow@1`` document, or None while the shadow is disabled."""
        with self._lock:
            return self._acc.summary() if self._acc is not None else None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the offered frame (if any) is compared; True when idle. For tests and --once."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._busy == 0:
                    return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.005)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self._worker is not None:
            while True:
                try:
                    self._slot.put(None, timeout=0.1)
                    break
                except queue.Full:
                    try:
                        self._slot.get_nowait()
                    except queue.Empty:
                        pass
            self._worker.join(timeout=30)
        self._swap_engine(None)
        with self._lock:
            self._acc = None

