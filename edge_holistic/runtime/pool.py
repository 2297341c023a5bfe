"""Interpreter pool: load lazily, load once, release when idle.

Keyed by (role, variant, precision, threads, slot). ``slot`` separates
interpreters that must not be shared because they run on different threads
(left and right hand run concurrently, each with its own interpreters).
"""
from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from typing import Dict, Hashable, Iterable, List, Optional, Set, Tuple

from .interpreter import TfliteModel, trim_heap
from .registry import Registry

Key = Tuple[str, str, str, int, str]


@dataclass
class _Entry:
    model: TfliteModel
    last_used: float


class ModelPool:
    def __init__(self, registry: Registry, idle_release_s: float = 300.0) -> None:
        self.registry = registry
        self.idle_release_s = idle_release_s
        self._entries: Dict[Key, _Entry] = {}
        self._key_locks: Dict[Key, threading.Lock] = {}
        self._lock = threading.Lock()
        self._in_use: Set[int] = set()  # union of every owner's set
        self._owners: Dict[Hashable, Set[int]] = {}
        self.loads = 0

    def get(self, role: str, variant: str, precision: str, threads: int, slot: str = "main") -> TfliteModel:
        """The interpreter for this key, loading it on first use.

        Two threads asking for the same key at once load it once: the second
        waits on the key's own lock, not on the whole pool.
        """
        spec = self.registry.spec(role, variant, precision)  # validates names first
        key: Key = (role, str(variant), precision, int(threads), slot)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.last_used = time.monotonic()
                return entry.model
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    entry.last_used = time.monotonic()
                    return entry.model
            model = self.registry.open(spec, num_threads=int(threads))
            with self._lock:
                self._entries[key] = _Entry(model, time.monotonic())
                self.loads += 1
            return model

    def retain(self, in_use_ids: Iterable[int], owner: Hashable = None) -> None:
        """Declare which interpreters ``owner``'s current configuration uses (never released).

        Each owner (an engine) replaces only its own set, so two engines on one pool never
        mark each other's interpreters idle; an empty set withdraws the owner.
        """
        now = time.monotonic()
        with self._lock:
            ids = set(in_use_ids)
            if ids:
                self._owners[owner] = ids
            else:
                self._owners.pop(owner, None)
            self._in_use = set().union(*self._owners.values())
            for e in self._entries.values():
                if id(e.model) in self._in_use:
                    e.last_used = now

    def release_idle(self, now: Optional[float] = None, max_idle_s: Optional[float] = None) -> List[str]:
        """Drop interpreters not in use and idle longer than the limit; return their names."""
        now = time.monotonic() if now is None else now
        limit = self.idle_release_s if max_idle_s is None else max_idle_s
        return self._drop(lambda key, e: now - e.last_used >= limit)

    def drop_namespace(self, namespace: str) -> List[str]:
        """Drop the interpreters of engines in ``namespace`` that no owner uses, now; their names.

        For an engine that is switched off for good (the A/B shadow disabled): its memory
        goes back at once instead of after ``idle_release_s``, and nobody else's idle
        interpreters are touched.
        """
        prefix = f"{namespace}/"
        return self._drop(lambda key, e: key[4].startswith(prefix))

    def _drop(self, should_drop) -> List[str]:
        """Drop the interpreters no owner uses that ``should_drop(key, entry)`` picks; their names."""
        dropped = []
        with self._lock:
            for key, e in list(self._entries.items()):
                if id(e.model) not in self._in_use and should_drop(key, e):
                    dropped.append(e.model.name)
                    del self._entries[key]
        if dropped:
            # Their weights go back to the heap; without a trim glibc keeps the pages and
            # RSS does not move (the model files' own pages were already released).
            gc.collect()
            trim_heap()
        return dropped

    def loaded(self) -> List[Tuple[Key, str, bool]]:
        with self._lock:
            return [(k, e.model.name, id(e.model) in self._in_use) for k, e in self._entries.items()]

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._in_use = set()
            self._owners = {}
