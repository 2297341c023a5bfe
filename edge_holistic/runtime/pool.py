"""Interpreter pool: load lazily, load once, release when idle.

Keyed by (role, variant, precision, threads, slot). ``slot`` separates
interpreters that must not be shared because they run on different threads
(left and right hand run concurrently, each with its own interpreters).

Several engines may share one pool (the daemon's primary and its A/B shadow): each
declares its own interpreters in use under its *owner* name, and an interpreter stays
loaded while any owner uses it. :meth:`ModelPool.scoped` gives an engine a view whose
slots are its own (``shadow/main``...), so two engines never invoke one interpreter from
two threads, even when they run the same model; :meth:`PoolScope.close` releases that
engine's interpreters at once (a disabled shadow gives its memory back).
"""
from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Set, Tuple

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
        self._owners: Dict[str, Set[int]] = {}
        self._in_use: Set[int] = set()  # union over owners
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

    def retain(self, in_use_ids: Iterable[int], owner: str = "main") -> None:
        """Declare which interpreters ``owner``'s current configuration uses (never released
        while any owner uses them); replaces that owner's earlier declaration."""
        now = time.monotonic()
        with self._lock:
            self._owners[owner] = set(in_use_ids)
            self._in_use = set().union(*self._owners.values())
            for e in self._entries.values():
                if id(e.model) in self._in_use:
                    e.last_used = now

    def release_idle(self, now: Optional[float] = None, max_idle_s: Optional[float] = None) -> List[str]:
        """Drop interpreters not in use and idle longer than the limit; return their names."""
        now = time.monotonic() if now is None else now
        limit = self.idle_release_s if max_idle_s is None else max_idle_s
        dropped = []
        with self._lock:
            for key, e in list(self._entries.items()):
                if id(e.model) in self._in_use:
                    continue
                if now - e.last_used >= limit:
                    dropped.append(e.model.name)
                    del self._entries[key]
        if dropped:
            # Their weights go back to the heap; without a trim glibc keeps the pages and
            # RSS does not move (the model files' own pages were already released).
            gc.collect()
            trim_heap()
        return dropped

    def scoped(self, name: str) -> "PoolScope":
        """A view of this pool for one more engine: own slots, own owner name."""
        return PoolScope(self, name)

    def drop_scope(self, name: str) -> List[str]:
        """Forget ``name``'s in-use declaration and drop its interpreters now; their names."""
        prefix = f"{name}/"
        dropped = []
        with self._lock:
            self._owners.pop(name, None)
            self._in_use = set().union(*self._owners.values())
            for key, e in list(self._entries.items()):
                if key[4].startswith(prefix) and id(e.model) not in self._in_use:
                    dropped.append(e.model.name)
                    del self._entries[key]
        if dropped:
            gc.collect()
            trim_heap()
        return dropped

    def loaded(self) -> List[Tuple[Key, str, bool]]:
        with self._lock:
            return [(k, e.model.name, id(e.model) in self._in_use) for k, e in self._entries.items()]

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._owners = {}
            self._in_use = set()


class PoolScope:
    """What an engine needs of a pool (``registry``, ``get``, ``retain``, ``release_idle``,
    ``close``), with slots prefixed by ``name`` and in-use declared as owner ``name``.
    ``close`` releases this scope's interpreters, never the shared pool's others."""

    def __init__(self, pool: ModelPool, name: str) -> None:
        if not name or "/" in name or name == "main":
            raise ValueError(f"pool scope name must be non-empty, without '/', not 'main'; got {name!r}")
        self.pool = pool
        self.name = name
        self.registry = pool.registry

    def get(self, role: str, variant: str, precision: str, threads: int, slot: str = "main") -> TfliteModel:
        return self.pool.get(role, variant, precision, threads, f"{self.name}/{slot}")

    def retain(self, in_use_ids: Iterable[int]) -> None:
        self.pool.retain(in_use_ids, owner=self.name)

    def release_idle(self, now: Optional[float] = None, max_idle_s: Optional[float] = None) -> List[str]:
        return self.pool.release_idle(now, max_idle_s)

    def loaded(self) -> List[Tuple[Key, str, bool]]:
        return [row for row in self.pool.loaded() if row[0][4].startswith(f"{self.name}/")]

    def close(self) -> List[str]:
        return self.pool.drop_scope(self.name)
