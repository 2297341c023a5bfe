"""Where per-frame messages go. The daemon talks to sinks only through this interface."""
from __future__ import annotations

import sys
from typing import Any, Dict, TextIO


class Sink:
    """A destination for landmarks@1 messages.

    ``publish`` must not block the frame loop for long (a slow network is the
    sink's problem: drop and count); ``stop`` flushes within a bounded time.
    """

    def publish(self, msg: Dict[str, Any]) -> bool:
        raise NotImplementedError

    def stop(self, timeout: float = 3.0) -> None:
        pass


class JsonLinesSink(Sink):
    """One JSON line per message on a text stream (stdout by default), for piping into other tools."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream

    def publish(self, msg: Dict[str, Any]) -> bool:
        from ..message import dumps

        self.stream.write(dumps(msg) + "\n")
        self.stream.flush()
        return True

    def stop(self, timeout: float = 3.0) -> None:
        self.stream.flush()
