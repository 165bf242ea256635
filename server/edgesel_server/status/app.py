"""The metrics port: `/metrics` for Prometheus and `/status` (+ `/status/<space>`) for people, one WSGI app.

Who may read it (`[server.metrics]`, docs/status.md): with `tokens_file`/`tokens_env` every path needs
`Authorization: Bearer <token>` (Prometheus: `authorization.credentials_file`); `/status` is further limited
by `status`: "loopback" (the default) answers only peers on a loopback address, "on" anyone who got past the
token check, "off" nobody. A refused page says why (401, 403 or 404), never what is behind it.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from edgesel_server.config import ConfigError, MetricsConfig
from edgesel_server.security import (
    TokenRegistry,
    bearer_token,
    is_loopback,
    read_tokens_file,
    tokens_from_env,
)
from edgesel_server.status import render
from edgesel_server.status.view import collect

if TYPE_CHECKING:
    from edgesel_server.engine import Engine

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# The page has no script and loads nothing: a browser may run nothing else on it either.
HTML_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]


def load_tokens(cfg: MetricsConfig) -> TokenRegistry | None:
    """The metrics port's bearer tokens, or None when it has none configured."""
    if not cfg.has_tokens:
        return None
    tokens: list[str] = []
    if cfg.tokens_file:
        tokens += read_tokens_file(cfg.tokens_file)
    if cfg.tokens_env:
        tokens += tokens_from_env(cfg.tokens_env)
    if not tokens:
        raise ConfigError("server.metrics: no tokens configured; every scrape would be refused")
    return TokenRegistry(tokens, ())


def peer_is_loopback(remote_addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(remote_addr.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return bool((mapped or ip).is_loopback)


@dataclass(frozen=True)
class Access:
    status: str  # MetricsConfig.status
    tokens: TokenRegistry | None

    def refusal(self, path: str, remote_addr: str, authorization: str | None) -> tuple[str, str] | None:
        """None when the request may be answered, else (HTTP status line, reason shown)."""
        if self.tokens is not None:
            token = bearer_token([("authorization", authorization)] if authorization else [])
            if token is None or self.tokens.authenticate(token) is None:
                return "401 Unauthorized", "a bearer token of [server.metrics] is required"
        if path == "/status" or path.startswith("/status/"):
            if self.status == "off":
                return "404 Not Found", "the status page is off ([server.metrics] status)"
            if self.status == "loopback" and not peer_is_loopback(remote_addr):
                why = 'the status page answers loopback peers only ([server.metrics] status = "on" opens it)'
                return "403 Forbidden", why
        return None


class MetricsPortApp:
    """Routes the metrics port's paths; called on the HTTP server's threads."""

    def __init__(self, registry: CollectorRegistry, engine: Engine | None, access: Access) -> None:
        self.metrics = make_wsgi_app(registry)
        self.engine = engine  # None: no status page
        self.access = access

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        refused = self.access.refusal(path, environ.get("REMOTE_ADDR", ""), environ.get("HTTP_AUTHORIZATION"))
        if refused is not None:
            status, reason = refused
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            if status.startswith("401"):
                headers.append(("WWW-Authenticate", 'Bearer realm="edgesel-metrics"'))
            return _text(start_response, status, reason, headers)
        if path == "/metrics":
            return self.metrics(environ, start_response)
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _text(start_response, "405 Method Not Allowed", "GET only", [("Allow", "GET, HEAD")])
        if path == "/":
            return _text(start_response, "200 OK", "edgesel metrics port: /metrics, /status")
        if self.engine is not None and (path in ("/status", "/status/") or path.startswith("/status/")):
            return self._status(path, start_response)
        return _text(start_response, "404 Not Found", "not found")

    def _status(self, path: str, start_response: StartResponse) -> Iterable[bytes]:
        assert self.engine is not None
        names = list(self.engine.spaces)
        # PATH_INFO is percent-decoded already, as Latin-1 (PEP 3333): back to the UTF-8 the link encoded.
        raw = path[len("/status/") :] if path.startswith("/status/") else ""
        wanted = raw.encode("latin-1", "replace").decode("utf-8", "replace")
        if wanted and wanted not in self.engine.spaces:
            return _text(start_response, "404 Not Found", "no such space")
        try:
            statuses = [collect(self.engine, n) for n in ([wanted] if wanted else names)]
            body = render.page(statuses, all_spaces=names).encode()
        except Exception:
            log.exception("status page failed")
            return _text(start_response, "500 Internal Server Error", "the status page failed; see the log")
        start_response("200 OK", [*HTML_HEADERS, ("Content-Length", str(len(body)))])
        return [body]


def _text(
    start_response: StartResponse, status: str, text: str, headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    body = (text + "\n").encode()
    hs = headers or [("Content-Type", "text/plain; charset=utf-8")]
    if not any(k == "Content-Type" for k, _ in hs):
        hs = [("Content-Type", "text/plain; charset=utf-8"), *hs]
    start_response(status, [*hs, ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Scrapes are frequent; failures show in Prometheus, not in our log."""


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow reader never holds up shutdown


class MetricsPort:
    """The HTTP server of the metrics port, on a daemon thread."""

    def __init__(self, listen: str, app: WsgiApp) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        family = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        server_class = type("MetricsHTTPServer", (_ThreadingWSGIServer,), {"address_family": family})
        self._server: WSGIServer = make_server(
            host, int(port), app, server_class, handler_class=_QuietHandler
        )
        shown = f"[{host}]" if ":" in host else host
        self.listen = f"{shown}:{self._server.server_port}"
        thread = threading.Thread(target=self._server.serve_forever, name="edgesel-metrics", daemon=True)
        thread.start()
        log.info("metrics listening", extra={"metrics_listen": self.listen})

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def warn_if_exposed(listen: str, cfg: MetricsConfig) -> None:
    """The metrics port beyond loopback without tokens shows per-space figures (and with status = "on" the
    catalog) to anyone who can reach it: say so loudly, as for the gRPC port."""
    if is_loopback(listen) or cfg.has_tokens:
        return
    what = "metrics and the status page" if cfg.status == "on" else "metrics"
    msg = (
        f"edgesel-server: WARNING: the metrics port listens on {listen} without tokens; anyone who can reach "
        f"it can read the {what} (see docs/status.md)"
    )
    log.warning(msg, extra={"listen": listen})
    print(msg, file=sys.stderr, flush=True)
