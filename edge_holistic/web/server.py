"""The HTTP server inside the daemon: aiohttp in its own thread with its own event loop.

Why its own thread and loop: the daemon's threads (capture, engine, publisher,
MQTT, health) are blocking code; the web server is many small waits (SSE
ticks, MJPEG writes, uploads arriving). One asyncio loop serves them all
without a thread per client, and nothing in it can block the frame path: the
server reads the daemon only through ``DaemonView`` and runs anything heavier
than a dict copy (drawing, JPEG encoding, image decoding, analyze models) in
its own small worker pool.

``start()`` returns once the socket is bound (or raises ``WebStartError``
naming the address); ``stop()`` closes connections within a few seconds.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

log = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0
WORKERS = 2  # drawing/encoding for MJPEG, decoding and analyze: two at once at most


class WebStartError(RuntimeError):
    pass


class WebServer:
    def __init__(self, view: Any, http_cfg: Any, defaults: Optional[dict] = None) -> None:
        from .auth import read_token

        self.view = view
        self.cfg = http_cfg
        self.defaults = dict(defaults or {})
        self.token = read_token(http_cfg.token_file)  # TokenError names the file
        self.host = http_cfg.host
        self.port = http_cfg.port
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="web-worker")
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._runner = None
        self._stopping: Optional[asyncio.Event] = None
        self.ctx = None

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}/"

    def start(self) -> "WebServer":
        self._thread = threading.Thread(target=self._main, name="web", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise WebStartError(f"web server did not start within {START_TIMEOUT_S:g} s")
        if self._error is not None:
            raise WebStartError(f"cannot serve http on {self.host}:{self.port}: {self._error}") from self._error
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # noqa: BLE001 - reported to start() or logged; never kills the daemon
            if not self._ready.is_set():
                self._error = e
                self._ready.set()
            else:
                log.exception("web server stopped with an error")
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _serve(self) -> None:
        from aiohttp import web

        from .routes import build_app

        self._stopping = asyncio.Event()
        app, self.ctx = build_app(self.view, self.cfg, self.token, self.executor, self.defaults)
        # keepalive_timeout also closes a connection whose request headers never complete
        # (aiohttp arms it when the connection opens): a client trickling headers is cut
        # off after it, like one trickling a body is after timeout_s (408).
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                                     keepalive_timeout=max(5.0, 2 * float(self.cfg.timeout_s)))
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        log.info("web page on %s (token %s)", self.url, "required" if self.token else "not required")
        self._ready.set()
        housekeeping = asyncio.get_running_loop().create_task(self.ctx.housekeeping())
        try:
            await self._stopping.wait()
        finally:
            housekeeping.cancel()
            self.ctx.close()
            await self._runner.cleanup()

    def stop(self, timeout: float = 5.0) -> None:
        loop = self.loop
        if loop is not None and self._stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
        self.executor.shutdown(wait=False, cancel_futures=True)
