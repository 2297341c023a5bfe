"""``POST /api/analyze``: one uploaded image through its own image-mode engine.

Why a separate engine per model set: the live stream's engine tracks a person
from frame to frame; an uploaded photo must be seen with fresh detection and no
smoothing, and must not reset or slow that tracking. Engines are built on first
use with models from the daemon's shared registry and pool (in a namespace of
their own), kept while used, and closed after ``IDLE_RELEASE_S`` without a
request; their interpreters then leave the pool at once.

One request at a time per model set (an engine is not re-entrant), and at most
``MAX_PARALLEL`` sets computing at once (the Pi has 4 cores and the live
stream needs its share). A request that cannot start within ``timeout_s`` gets
503 with ``Retry-After``; at most ``MAX_WAITING`` requests wait at all.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Tuple

log = logging.getLogger(__name__)

IDLE_RELEASE_S = 30.0  # a holistic set holds ~100 MB (measured, scripts/measure_web.py): let it go soon
MAX_PARALLEL = 1
MAX_WAITING = 8
MEMORY_RETRY_S = 30  # Retry-After while memory is above the soft limit (the guard checks every 5 s)
DRAW_VALUES = {"0": "json", "false": "json", "": "json", "1": "image", "true": "image", "embed": "embed"}
PARAM_KEYS = ("task", "pose_model", "hand_model", "precision", "draw")


class Busy(Exception):
    """No model set free within the timeout: 503 with Retry-After."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BadParameter(ValueError):
    """A parameter the registry or the API does not know: 422 naming it."""


ModelSet = Tuple[str, str, str, str]


def validate_params(params: Dict[str, str], installed: Dict[str, Any], defaults: Dict[str, str]) -> Tuple[ModelSet, str]:
    """((task, pose_model, hand_model, precision), draw mode) or BadParameter naming the key.

    Names are checked against the installed variants only (the registry's names):
    nothing a client sends becomes a file path.
    """
    unknown = sorted(set(params) - set(PARAM_KEYS))
    if unknown:
        raise BadParameter(f"unknown parameter(s): {', '.join(unknown)}; valid: {', '.join(PARAM_KEYS)}")
    values = {}
    for key in ("task", "pose_model", "hand_model", "precision"):
        value = params.get(key) or defaults.get(key)
        valid = [str(v) for v in installed.get(key) or []]
        if value not in valid:
            raise BadParameter(f"unknown {key} {value!r}; installed: {', '.join(valid) or 'none'}")
        values[key] = value
    draw = DRAW_VALUES.get(str(params.get("draw", "")).lower())
    if draw is None:
        raise BadParameter(f"draw must be 0, 1 or embed, got {params.get('draw')!r}")
    return (values["task"], values["pose_model"], values["hand_model"], values["precision"]), draw


def make_image_engine(model_set: ModelSet, registry: Any, pool: Any = None) -> Any:
    """An image-mode engine for one model set (static: detection on every image, no smoothing).

    It takes its interpreters from the daemon's shared pool, in a namespace of its own
    (``web-analyze:<set>``): the live engine runs at the same time, and an interpreter
    must never run on two threads at once. One thread, models one after the other: the
    live stream keeps the other cores.
    """
    from ..pipeline.engine import Engine, EngineOptions, RunningMode

    task, pose_model, hand_model, precision = model_set
    return Engine(EngineOptions(running_mode=RunningMode.IMAGE, task=task, pose_model=pose_model,
                                hand_model=hand_model, precision=precision, threads=1, smooth=False,
                                schedule="sequential"),
                  registry=registry, pool=pool, namespace="web-analyze:" + "/".join(model_set))


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    engine: Any = None
    last_used: float = 0.0


class Analyzer:
    """Model sets on demand; runs detections in the web server's worker threads."""

    def __init__(self, registry: Any, pool: Any, executor: Any, timeout_s: float,
                 memory_level: Callable[[], str] = lambda: "ok") -> None:
        self.registry = registry
        self.pool = pool
        self.memory_level = memory_level
        self.executor = executor
        self.timeout_s = timeout_s
        self._slots: Dict[ModelSet, _Slot] = {}
        self._parallel = asyncio.Semaphore(MAX_PARALLEL)
        self.waiting = 0
        self.seq = 0

    async def run(self, model_set: ModelSet, rgb: Any) -> Any:
        """The FrameResult for one image, or Busy / the engine's ModelError / ValueError."""
        if self.waiting >= MAX_WAITING:
            raise Busy(f"{self.waiting} analyze requests already waiting", self._retry_after())
        slot = self._slots.get(model_set)
        if (slot is None or slot.engine is None) and self.memory_level() != "ok":
            # A model set costs ~30-100 MB (holistic float measured +99 MB): loading one while the
            # daemon sheds load could carry it past the hard limit, which ends the process. A set
            # already loaded still answers; a new one waits until memory is back to normal.
            self.release_idle(max_idle_s=0)
            raise Busy(f"memory above the soft limit (the daemon is shedding load): model set "
                       f"{'/'.join(model_set)} not loaded; try again later", MEMORY_RETRY_S)
        slot = self._slots.setdefault(model_set, _Slot())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        self.waiting += 1
        try:
            try:
                await asyncio.wait_for(slot.lock.acquire(), self.timeout_s)
            except asyncio.TimeoutError:
                raise Busy(f"model set {'/'.join(model_set)} busy for {self.timeout_s:g} s",
                           self._retry_after()) from None
            try:
                try:
                    await asyncio.wait_for(self._parallel.acquire(), max(0.01, deadline - loop.time()))
                except asyncio.TimeoutError:
                    raise Busy(f"analyzer busy for {self.timeout_s:g} s", self._retry_after()) from None
            except BaseException:
                slot.lock.release()
                raise
        finally:
            self.waiting -= 1
        def release(_fut: Any = None) -> None:
            slot.last_used = time.monotonic()
            self._parallel.release()
            slot.lock.release()

        # Loading a model set happens once and is bounded by the files' size: not timed.
        # The detection is: after timeout_s the client gets 503; the slot stays taken until
        # the worker really finishes (a thread cannot be interrupted).
        try:
            if slot.engine is None:
                slot.engine = await asyncio.shield(loop.run_in_executor(
                    self.executor, make_image_engine, model_set, self.registry, self.pool))
                log.info("analyze: loaded model set %s", "/".join(model_set))
            started = time.monotonic()
            fut = loop.run_in_executor(self.executor, slot.engine.detect, rgb)
        except BaseException:
            release()
            raise
        fut.add_done_callback(release)  # an asyncio future: called on this loop
        try:
            result = await asyncio.wait_for(asyncio.shield(fut), self.timeout_s)
        except asyncio.TimeoutError:
            raise Busy(f"processing took longer than {self.timeout_s:g} s (http.timeout_s); result abandoned "
                       f"after {time.monotonic() - started:.1f} s", self._retry_after()) from None
        self.seq += 1
        return result

    def _retry_after(self) -> int:
        return max(1, int(round(self.timeout_s)))

    def release_idle(self, max_idle_s: float = IDLE_RELEASE_S) -> None:
        """Close engines not used for ``max_idle_s`` (called periodically on the server loop)."""
        now = time.monotonic()
        released = False
        for key, slot in list(self._slots.items()):
            if slot.engine is not None and not slot.lock.locked() and now - slot.last_used > max_idle_s:
                engine, slot.engine = slot.engine, None
                del self._slots[key]
                try:
                    engine.close()
                except Exception as e:  # noqa: BLE001
                    log.warning("analyze: closing model set %s: %s", "/".join(key), e)
                del engine  # the trim below frees nothing while this still holds the interpreters
                log.info("analyze: released idle model set %s", "/".join(key))
                released = True
        if released:
            # A closed engine's interpreters stay in the pool, idle, for the pool's own
            # release time (5 min): drop the idle ones now. The pool then trims the heap;
            # without the trim glibc keeps the freed weights' pages (a holistic set measured
            # 170 MB loaded -> 132 MB closed -> 68 MB trimmed, in a bare process).
            if self.pool is not None:
                self.pool.release_idle(max_idle_s=0)
            else:
                import gc

                from ..runtime.interpreter import trim_heap

                gc.collect()
                trim_heap()

    def loaded(self) -> list:
        return ["/".join(k) for k, s in self._slots.items() if s.engine is not None]

    def close(self) -> None:
        for slot in self._slots.values():
            if slot.engine is not None:
                try:
                    slot.engine.close()
                except Exception:  # noqa: BLE001
                    pass
                slot.engine = None
        self._slots.clear()
