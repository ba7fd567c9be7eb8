"""``millstream dashboard``: the page, its event stream and its JSON, over aiohttp.

Routes: ``/`` (the page) and ``/static/`` (its scripts, styles and the vendored uPlot);
``/api/events`` (Server-Sent Events: a snapshot, then changes; ``?tag=`` adds that tag's
window results); ``/api/plant``, ``/api/config``, ``/api/tag``, ``/api/history``;
``POST /api/alarms/{id}/{ack|shelve}`` (the only write, when the alarms stage is there);
``/healthz``, ``/readyz``, ``/metrics``, ``/status`` (:mod:`schemas.health`).

Security: no login, so it binds to loopback unless configured; on loopback it answers
only requests addressed to a loopback name (a web page elsewhere cannot reach it through
DNS rebinding); the write needs a custom header and a same-origin ``Origin`` (no
cross-site form can send it); a strict Content-Security-Policy (nothing from elsewhere).
Behind a proxy that ends TLS the page's origin is ``https://`` while the request arrives
over http: with ``trust_forwarded`` the origin check takes the scheme and host from the
proxy's ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` (set it only behind such a proxy).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder
from yarl import URL

from millstream.dashboard.actions import AlarmActionError
from millstream.dashboard.history import HistoryError, HistoryRequest, fetch_history
from millstream.dashboard.hub import sse
from millstream.dashboard.service import FEED_KEYS, Dashboard
from schemas.exceptions import MillstreamError

__all__ = ["ACTION_HEADER", "DashboardError", "make_app", "serve", "shown_url"]

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
ACTION_HEADER = "X-Millstream-Dashboard"
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_DASH: web.AppKey[Dashboard] = web.AppKey("dashboard", Dashboard)
_LOOPBACK: web.AppKey[bool] = web.AppKey("loopback", bool)
_FORWARDED: web.AppKey[bool] = web.AppKey("trust_forwarded", bool)


class DashboardError(MillstreamError):
    """The dashboard cannot start (its port is taken, its address is wrong)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def shown_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _own_origin(request: web.Request) -> str:
    """The origin the page was loaded from: the request's own, or the proxy's view of it."""
    scheme, host = request.scheme, request.host
    if request.app[_FORWARDED]:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            scheme = proto
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or host
    return f"{scheme}://{host}"


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.app[_LOOPBACK]:
        try:
            name = URL(f"http://{request.host}").host or ""
        except ValueError:
            name = ""
        if name.lower() not in _LOOPBACK_NAMES:
            return _error(421, f"this dashboard is bound to loopback and answers only "
                               f"http://127.0.0.1 or http://localhost, not host {request.host!r}"
                               "; to serve other names set MILLSTREAM_DASHBOARD_HOST")
    if request.method not in ("GET", "HEAD"):
        origin = request.headers.get("Origin")
        if request.headers.get(ACTION_HEADER) != "1" or (
                origin is not None and origin != _own_origin(request)):
            return _error(403, f"writes need the {ACTION_HEADER}: 1 header and a same-origin "
                               "request: use the dashboard page or `millstream alarm`")
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _events(request: web.Request) -> web.StreamResponse:
    dash = request.app[_DASH]
    tag = request.query.get("tag") or None
    client = dash.hub.add(tag)
    snapshot = dash.state.snapshot()  # taken with the client added: nothing falls between
    snapshot["feed"] = {k: v for k, v in dash.status().items() if k in FEED_KEYS}
    if tag is not None:
        snapshot["tag"] = dash.state.tag_detail(tag)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        await resp.prepare(request)
        await resp.write(b"retry: 2000\n\n" + sse("snapshot", snapshot))
        while True:
            try:
                chunk = await asyncio.wait_for(client.queue.get(), timeout=15)
            except TimeoutError:
                chunk = b": keep-alive\n\n"
            if chunk is None:
                break
            await resp.write(chunk)
    except (ConnectionResetError, ConnectionError):
        pass  # the page went away
    finally:
        dash.hub.remove(client)
    return resp


async def _plant(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[_DASH].plant())


async def _config(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[_DASH].page_config())


async def _tag(request: web.Request) -> web.StreamResponse:
    dash = request.app[_DASH]
    tag = request.query.get("tag", "")
    if tag not in dash.known_tags:
        return _error(404, f"tag {tag!r} is not in the catalog")
    return web.json_response(dash.state.tag_detail(tag))


def _int_arg(request: web.Request, name: str) -> int:
    raw = request.query.get(name, "")
    try:
        return int(float(raw))
    except ValueError as exc:
        raise HistoryError(f"{name}={raw!r} must be a time in Unix milliseconds") from exc


async def _history(request: web.Request) -> web.StreamResponse:
    dash = request.app[_DASH]
    try:
        req = HistoryRequest(request.query.get("tag", ""), _int_arg(request, "from"),
                             _int_arg(request, "to"))
        req.check(dash.known_tags)
    except HistoryError as exc:
        return _error(400, str(exc))
    try:
        doc = await asyncio.to_thread(fetch_history, dash.config.dsn, req)
    except HistoryError as exc:
        return _error(503, str(exc))
    return web.json_response(doc)


async def _alarm_action(request: web.Request) -> web.StreamResponse:
    dash = request.app[_DASH]
    alarm_id, verb = request.match_info["alarm_id"], request.match_info["verb"]
    if not dash.actions.available:
        return _error(501, dash.actions.why_not())
    alarm = dash.state.alarms.get(alarm_id)
    if alarm is None:
        return _error(404, f"alarm {alarm_id!r} is not open on this dashboard (closed, or "
                           "older than MILLSTREAM_DASHBOARD_ALARM_LOOKBACK_S)")
    try:
        body = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError:
        return _error(400, "the body must be JSON, e.g. {\"note\": \"...\", \"for_s\": 3600}")
    body = body if isinstance(body, dict) else {}
    shelve_s = body.get("for_s")
    try:
        sent = await asyncio.to_thread(dash.actions.send, alarm, verb, str(body.get("note", "")),
                                       float(shelve_s) if shelve_s is not None else None)
    except (AlarmActionError, ValueError) as exc:
        return _error(getattr(exc, "status", 400), str(exc))
    return web.json_response({"sent": sent}, status=202)


async def _healthz(request: web.Request) -> web.StreamResponse:
    ok, body = request.app[_DASH].health.liveness()
    return web.json_response(body, status=200 if ok else 503)


async def _readyz(request: web.Request) -> web.StreamResponse:
    ok, body = await asyncio.to_thread(request.app[_DASH].health.readiness)
    return web.json_response(body, status=200 if ok else 503)


async def _metrics(request: web.Request) -> web.StreamResponse:
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(request.app[_DASH].health.registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    return resp


async def _status(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[_DASH].status(), dumps=lambda d: json.dumps(
        d, default=str))


def make_app(dash: Dashboard, *, loopback: bool,
             trust_forwarded: bool = False) -> web.Application:
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024)
    app[_DASH], app[_LOOPBACK], app[_FORWARDED] = dash, loopback, trust_forwarded
    r = app.router
    r.add_get("/", _index)
    r.add_static("/static/", STATIC, follow_symlinks=False)
    r.add_get("/api/events", _events)
    r.add_get("/api/plant", _plant)
    r.add_get("/api/config", _config)
    r.add_get("/api/tag", _tag)
    r.add_get("/api/history", _history)
    r.add_post("/api/alarms/{alarm_id}/{verb}", _alarm_action)
    r.add_get("/healthz", _healthz)
    r.add_get("/readyz", _readyz)
    r.add_get("/metrics", _metrics)
    r.add_get("/status", _status)
    return app


async def serve(dash: Dashboard, host: str, port: int, stop: asyncio.Event,
                on_ready: Callable[[str], Any] | None = None, *,
                trust_forwarded: bool = False) -> None:
    """Serve until ``stop`` is set. ``on_ready`` gets the page's URL once it listens."""
    app = make_app(dash, loopback=_is_loopback(host), trust_forwarded=trust_forwarded)
    runner = web.AppRunner(app, access_log=None,
                           handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise DashboardError(
                f"the dashboard cannot listen on {host}:{port}: {exc.strerror or exc}; set "
                "MILLSTREAM_DASHBOARD_PORT to a free port (0: any free port) or "
                "MILLSTREAM_DASHBOARD_HOST to an address of this machine") from exc
        bound = runner.addresses[0][1] if runner.addresses else port
        dash.url = shown_url(host, bound)
        await dash.start()
        logger.info("dashboard on %s", dash.url)
        if on_ready is not None:
            on_ready(dash.url)
        try:
            await stop.wait()
        finally:
            await dash.stop()
    finally:
        await runner.cleanup()
