"""Where per-frame messages go. The daemon talks to sinks only through this interface."""
from __future__ import annotations

import sys
from typing import Any, Dict, Optional, TextIO


class Sink:
    """A destination for landmarks@1 messages.

    ``publish`` must not block the frame loop for long (a slow network is the
    sink's problem: drop and count); ``stop`` flushes within a bounded time.
    ``payload`` is the message already encoded by ``message.dumps``, so several
    sinks share one encoding per frame.
    """

    def publish(self, msg: Dict[str, Any], payload: Optional[bytes] = None) -> bool:
        raise NotImplementedError

    def stop(self, timeout: float = 3.0) -> None:
        pass


def encode(msg: Dict[str, Any], payload: Optional[bytes]) -> bytes:
    if payload is not None:
        return payload
    from ..message import dumps

    return dumps(msg).encode()


class JsonLinesSink(Sink):
    """One JSON line per message on a text stream (stdout by default), for piping into other tools."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream

    def publish(self, msg: Dict[str, Any], payload: Optional[bytes] = None) -> bool:
        try:
            self.stream.write(encode(msg, payload).decode() + "\n")
            self.stream.flush()
        except BrokenPipeError:  # the reader went away: not a reason to stop the camera
            return False
        return True

    def stop(self, timeout: float = 3.0) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            pass
