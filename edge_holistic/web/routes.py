"""Routes of the web page and HTTP API, and the middleware around them.

Every error is JSON ``{"error": "<what was wrong>", "status": N}`` with a status
that fits: 400 (empty or malformed), 401 (token), 404, 408 (upload too slow),
413 (too large: bytes or claimed pixels), 415 (not an accepted image type),
422 (a value the registry or API does not know, an image too small or
corrupt), 503 (busy: ``Retry-After``; or unhealthy). No handler lets an
exception out: the daemon is not stopped by anything a client sends.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from aiohttp import web

from ..runtime.registry import ModelError
from . import auth
from .analyze import Analyzer, BadParameter, Busy, validate_params
from .images import ImageRejected, decode
from .live import BOUNDARY, WRITE_TIMEOUT_S, FrameHub, LiveNumbers
from .metrics import WebMetrics

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
CMD_MAX_BYTES = 4096
FIELD_MAX_BYTES = 64  # form fields other than the image: model names, draw flag
CHUNK = 64 * 1024
EVENTS_INTERVAL_S = 1.0
STATS_CACHE_S = 1.0
MAX_EVENT_CLIENTS = 16
MAX_STREAM_WATCHERS = 8
HOUSEKEEPING_S = 10.0
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def json_error(status: int, message: str, headers: Optional[Dict[str, str]] = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


@dataclass
class Context:
    """What the handlers share; built once per server."""

    view: Any
    cfg: Any
    token: Optional[str]
    executor: Any
    defaults: Dict[str, str]
    metrics: WebMetrics
    numbers: LiveNumbers
    hub: FrameHub
    analyzer: Analyzer
    untap: Any = None
    event_clients: int = 0
    _stats: Tuple[float, Dict[str, Any]] = field(default_factory=lambda: (0.0, {}))

    @property
    def max_upload(self) -> int:
        return int(self.cfg.max_upload_mb * 1024 * 1024)

    def stats(self) -> Dict[str, Any]:
        """The daemon's stats document, at most once a second for every client together."""
        t, doc = self._stats
        now = time.monotonic()
        if now - t > STATS_CACHE_S:
            doc = self.view.stats() or {}
            self._stats = (now, doc)
        return doc

    async def housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                self.analyzer.release_idle()
            except Exception:  # noqa: BLE001
                log.exception("web housekeeping")

    def close(self) -> None:
        if self.untap is not None:
            self.untap()
            self.untap = None
        self.hub.close()
        self.analyzer.close()


CTX = web.AppKey("ctx", Context)


# -- middleware ---------------------------------------------------------------------------
def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def guard(request: web.Request, handler) -> web.StreamResponse:
    """Token check, JSON errors, security headers, request counting."""
    ctx = request.app[CTX]
    route = _route_name(request)
    try:
        if not auth.authorized(ctx.token, request.path, request.headers.get("Authorization"),
                               request.cookies.get(auth.COOKIE)):
            if request.method == "GET" and request.path in ("/", "/analyze"):
                resp: web.StreamResponse = web.FileResponse(STATIC / "login.html", status=401)
            else:
                resp = json_error(401, "missing or wrong token: send 'Authorization: Bearer <token>' "
                                       "(http.token_file) or log in on the page",
                                  {"WWW-Authenticate": 'Bearer realm="edge-holistic"'})
        else:
            resp = await handler(request)
    except ApiError as e:
        resp = json_error(e.status, str(e), e.headers)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        resp = json_error(e.status, e.reason if e.status != 404 else f"no such page or endpoint: {request.path}",
                          {k: v for k, v in e.headers.items() if k in ("Allow", "Retry-After")})
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:
        raise
    except Exception as e:  # noqa: BLE001 - a handler bug answers 500, never stops the daemon
        log.exception("web: %s %s failed", request.method, request.path)
        resp = json_error(500, f"internal error: {type(e).__name__}")
    ctx.metrics.http_requests.labels(route=route, status=str(resp.status)).inc()
    if not resp.prepared:
        h = resp.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("Content-Security-Policy", CSP)
        if request.path.startswith("/api/"):
            h.setdefault("Cache-Control", "no-store")
    return resp


def _security_headers(resp: web.StreamResponse) -> None:
    """For streamed responses, prepared inside the handler (the middleware sees them too late)."""
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "no-store"


# -- pages -----------------------------------------------------------------------------------
async def page_live(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html")


async def page_analyze(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "analyze.html")


# -- documents ----------------------------------------------------------------------------------
async def api_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[CTX].view.status())


async def api_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[CTX].view.stats())


async def api_latest(request: web.Request) -> web.Response:
    msg = request.app[CTX].view.latest()
    if msg is None:
        raise ApiError(404, "no frame processed yet")
    return web.json_response(msg)


async def api_options(request: web.Request) -> web.Response:
    """What the selectors offer: installed variants (registry names) and the current settings."""
    ctx = request.app[CTX]
    status = ctx.view.status() or {}
    current = {k: status.get(k) for k in ("task", "pose_model", "hand_model", "precision", "max_fps")}
    current["paused"] = status.get("state") == "paused"
    return web.json_response({"installed": ctx.view.installed_variants(), "current": current,
                              "defaults": ctx.defaults, "max_upload_mb": ctx.cfg.max_upload_mb,
                              "max_side": ctx.cfg.max_side})


async def healthz(request: web.Request) -> web.Response:
    ok, reason = request.app[CTX].view.health()
    if ok:
        return web.json_response({"ok": True})
    return web.json_response({"ok": False, "reason": reason}, status=503)


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await asyncio.get_running_loop().run_in_executor(ctx.executor, ctx.metrics.render)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


# -- login / controls ---------------------------------------------------------------------------
async def _small_json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ApiError(415, f"send the command as application/json, not {request.content_type or 'no type'}")
    if request.content_length is not None and request.content_length > CMD_MAX_BYTES:
        raise ApiError(413, f"body too large: {request.content_length} bytes (limit {CMD_MAX_BYTES})")
    try:
        body = await asyncio.wait_for(request.content.read(CMD_MAX_BYTES + 1), request.app[CTX].cfg.timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(408, "body not received in time") from None
    if len(body) > CMD_MAX_BYTES:
        raise ApiError(413, f"body too large (limit {CMD_MAX_BYTES} bytes)")
    if not body:
        raise ApiError(400, "empty body: send a JSON object")
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"body is not valid JSON: {e}") from None


async def api_login(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    doc = await _small_json(request)
    given = doc.get("token") if isinstance(doc, dict) else None
    if ctx.token is None:
        return web.json_response({"ok": True, "token_required": False})
    if not isinstance(given, str) or not auth.token_matches(ctx.token, given):
        await asyncio.sleep(0.5)  # slows guessing; the comparison itself is constant-time
        raise ApiError(401, "wrong token")
    resp = web.json_response({"ok": True, "token_required": True})
    resp.set_cookie(auth.COOKIE, given, httponly=True, samesite="Strict", path="/")
    return resp


async def api_cmd(request: web.Request) -> web.Response:
    """The page's controls: the same document and validation path as the MQTT ``cmd`` topic."""
    ctx = request.app[CTX]
    doc = await _small_json(request)
    if not isinstance(doc, dict):
        raise ApiError(400, f"command must be a JSON object, got {type(doc).__name__}")
    result = await asyncio.get_running_loop().run_in_executor(
        ctx.executor, lambda: ctx.view.command(doc, origin="web", timeout=ctx.cfg.timeout_s))
    if not result.get("ok"):
        error = str(result.get("error", ""))
        if error.startswith("no result within") or "queue full" in error:  # busy, not wrong
            return web.json_response(result, status=503, headers={"Retry-After": "1"})
        return web.json_response(result, status=422)
    return web.json_response(result)


# -- live ------------------------------------------------------------------------------------
def _live_doc(ctx: Context) -> Dict[str, Any]:
    stats = ctx.stats()
    status = ctx.view.status() or {}
    mqtt = stats.get("mqtt")
    return {
        "ts": time.time(),
        "fps": ctx.numbers.fps(),
        "latency_ms": None if ctx.numbers.latency_ms is None else round(ctx.numbers.latency_ms, 1),
        "person": ctx.numbers.person,
        "frames": ctx.numbers.frames,
        "rss_mb": stats.get("rss_mb"),
        "cpu_percent": stats.get("cpu_percent"),
        "temperature_c": stats.get("temperature_c"),
        "mqtt": "off" if mqtt is None else ("connected" if mqtt.get("connected") else "disconnected"),
        "state": status.get("state"),
        "models": ctx.numbers.models or status.get("models") or {},
        "settings": {k: status.get(k) for k in ("task", "pose_model", "hand_model", "precision", "max_fps")},
        "watchers": ctx.hub.watchers,
    }


async def api_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the live numbers once a second."""
    ctx = request.app[CTX]
    if ctx.event_clients >= MAX_EVENT_CLIENTS:
        raise ApiError(503, f"too many live pages open ({MAX_EVENT_CLIENTS})", {"Retry-After": "5"})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    _security_headers(resp)
    ctx.event_clients += 1
    try:
        await resp.prepare(request)
        while True:
            data = json.dumps(_live_doc(ctx), separators=(",", ":"), default=str)
            await asyncio.wait_for(resp.write(f"event: live\ndata: {data}\n\n".encode()), WRITE_TIMEOUT_S)
            await asyncio.sleep(EVENTS_INTERVAL_S)
    except (ConnectionResetError, asyncio.TimeoutError):
        pass
    finally:
        ctx.event_clients -= 1
    return resp


async def stream_mjpeg(request: web.Request) -> web.StreamResponse:
    """multipart/x-mixed-replace JPEG frames; drawing runs only while someone watches."""
    ctx = request.app[CTX]
    hub = ctx.hub
    if hub.watchers >= MAX_STREAM_WATCHERS:
        raise ApiError(503, f"too many stream watchers ({MAX_STREAM_WATCHERS})", {"Retry-After": "5"})
    resp = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}"})
    _security_headers(resp)
    hub.enter()
    try:
        await resp.prepare(request)
        seq = 0
        while True:
            item = await hub.next_frame(seq, timeout=5.0)
            if item is None:  # paused or no frames: keep the connection, check the client is there
                continue
            seq, jpeg = item
            head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n").encode()
            await asyncio.wait_for(resp.write(head + jpeg + b"\r\n"), WRITE_TIMEOUT_S)
    except (ConnectionResetError, asyncio.TimeoutError):
        pass
    finally:
        hub.leave()
    return resp


# -- analyze ------------------------------------------------------------------------------------
async def _read_limited(stream: Any, limit: int, what: str) -> bytes:
    buf = bytearray()
    while True:
        chunk = await stream.read_chunk(CHUNK) if hasattr(stream, "read_chunk") else await stream.read(CHUNK)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise ApiError(413, f"{what} larger than the limit of {limit / 1048576:g} MB (http.max_upload_mb); "
                                "refused before reading the rest")


async def _read_upload(request: web.Request, ctx: Context) -> Tuple[bytes, str, Dict[str, str]]:
    """(image bytes, name, form fields); the size limit is enforced as bytes arrive."""
    limit = ctx.max_upload
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise ApiError(413, f"upload of {request.content_length} bytes is larger than the limit of "
                            f"{limit / 1048576:g} MB (http.max_upload_mb)")
    fields: Dict[str, str] = {}
    ctype = request.content_type
    if ctype == "multipart/form-data":
        try:
            reader = await request.multipart()
        except (ValueError, AssertionError) as e:
            raise ApiError(400, f"malformed multipart body: {e}") from None
        data: Optional[bytes] = None
        name = "upload"
        while True:
            try:
                part = await reader.next()
            except ValueError as e:
                raise ApiError(400, f"malformed multipart body: {e}") from None
            if part is None:
                break
            if part.name == "image":
                if data is not None:
                    raise ApiError(400, "more than one 'image' field")
                data = await _read_limited(part, limit, "image")
                name = part.filename or name
            elif part.name in ("task", "pose_model", "hand_model", "precision", "draw"):
                value = await _read_limited(part, FIELD_MAX_BYTES, f"field {part.name!r}")
                fields[part.name] = value.decode("utf-8", "replace").strip()
            else:
                raise ApiError(422, f"unknown form field {part.name!r}; send the image as 'image' "
                                    "and parameters task, pose_model, hand_model, precision, draw")
        if data is None:
            raise ApiError(400, "no 'image' field in the form")
        return data, name, fields
    if ctype and not (ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise ApiError(415, f"send an image (multipart field 'image', or the raw image with an image/* "
                            f"or application/octet-stream type), not {ctype}")
    return await _read_limited(request.content, limit, "upload"), "upload", fields


async def api_analyze(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    t0 = time.perf_counter()
    outcome = "error"
    try:
        try:
            data, name, fields = await asyncio.wait_for(_read_upload(request, ctx), ctx.cfg.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(408, f"upload not received within {ctx.cfg.timeout_s:g} s (http.timeout_s)") from None
        params = {**dict(request.query), **fields}
        try:
            model_set, draw = validate_params(params, ctx.view.installed_variants(), ctx.defaults)
        except BadParameter as e:
            raise ApiError(422, str(e)) from None
        loop = asyncio.get_running_loop()
        try:
            bgr, info = await loop.run_in_executor(ctx.executor, decode, data, ctx.cfg.max_side)
        except ImageRejected as e:
            raise ApiError(e.status, str(e)) from None
        del data
        rgb = bgr[:, :, ::-1].copy()
        try:
            result = await ctx.analyzer.run(model_set, rgb)
        except Busy as e:
            outcome = "busy"
            raise ApiError(503, str(e), {"Retry-After": str(e.retry_after)}) from None
        except (ValueError, ModelError) as e:  # a model file missing or altered, a bad option
            raise ApiError(422, str(e)) from None
        outcome = "ok"
        from ..message import build_message

        msg = build_message(result, source=f"upload:{name}"[:200], seq=ctx.analyzer.seq, ts=time.time())
        msg["frame"]["width"], msg["frame"]["height"] = info.width, info.height  # normalised to the original
        if draw == "json":
            return web.json_response(msg)
        jpeg = await loop.run_in_executor(ctx.executor, _draw_jpeg, bgr, result)
        if draw == "image":
            return web.Response(body=jpeg, content_type="image/jpeg",
                                headers={"Content-Disposition": 'inline; filename="annotated.jpg"'})
        import base64

        return web.json_response({"message": msg, "image": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()})
    except ApiError as e:
        if outcome != "busy":
            outcome = f"rejected_{e.status}"
        raise
    finally:
        ctx.metrics.analyze.labels(outcome=outcome).inc()
        if outcome == "ok":
            ctx.metrics.analyze_seconds.observe(time.perf_counter() - t0)


def _draw_jpeg(bgr: Any, result: Any) -> bytes:
    import cv2

    from ..draw import draw_result

    ok, buf = cv2.imencode(".jpg", draw_result(bgr, result), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes()


# -- app -----------------------------------------------------------------------------------------
def build_app(view: Any, cfg: Any, token: Optional[str], executor: Any, defaults: Dict[str, str]):
    loop = asyncio.get_running_loop()
    metrics_ = WebMetrics(view)
    numbers = LiveNumbers()
    ctx = Context(view=view, cfg=cfg, token=token, executor=executor, defaults=defaults, metrics=metrics_,
                  numbers=numbers, hub=FrameHub(view, loop, executor, metrics_),
                  analyzer=Analyzer(view.registry, view.pool, executor, cfg.timeout_s, view.memory_level))

    def always_on_tap(rgb: Any, result: Any, message: Any) -> None:
        numbers.tap(rgb, result, message)
        metrics_.observe_frame(result)

    ctx.untap = view.add_frame_tap(always_on_tap)
    app = web.Application(middlewares=[guard], client_max_size=ctx.max_upload + 64 * 1024)
    app[CTX] = ctx
    r = app.router
    r.add_get("/", page_live)
    r.add_get("/analyze", page_analyze)
    r.add_static("/static/", STATIC, follow_symlinks=False, append_version=False)
    r.add_get("/api/status", api_status)
    r.add_get("/api/stats", api_stats)
    r.add_get("/api/latest", api_latest)
    r.add_get("/api/options", api_options)
    r.add_get("/api/events", api_events, allow_head=False)  # endless bodies: no HEAD
    r.add_post("/api/cmd", api_cmd)
    r.add_post("/api/login", api_login)
    r.add_post("/api/analyze", api_analyze)
    r.add_get("/stream.mjpg", stream_mjpeg, allow_head=False)
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics)
    return app, ctx
