"""Who may call what: TLS credentials, bearer tokens in two roles, the caller's principal, rate limits.

A token is never logged and never stored: the server keeps SHA-256 digests to compare against (in constant
time, over every known token), and names a caller by its *principal*, a separate hash of its token that is
stable across restarts, so a decision can be bound to the token that asked for it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable
from contextvars import ContextVar
from pathlib import Path

import grpc

from edgesel_server.config import AuthConfig, ConfigError, ServerConfig, TlsConfig

log = logging.getLogger(__name__)

# The authenticated principal of the RPC being served; set by the RPC guard, never from client metadata.
PRINCIPAL: ContextVar[str] = ContextVar("edgesel_principal", default="")
SHORT_TOKEN_WARNING = 16
RATE_LIMIT_MAX_KEYS = 65_536


class Role(enum.IntEnum):
    DEVICE = 1  # SelectionService only
    ADMIN = 2  # everything


def current_principal() -> str:
    return PRINCIPAL.get()


def principal_of(token: str) -> str:
    # Domain-separated from the comparison digest; 128 bits is plenty to tell tokens apart.
    return "tok-" + hashlib.sha256(b"edgesel-principal\0" + token.encode()).hexdigest()[:32]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _check_token(token: str, where: str) -> str:
    if not token.isascii() or not token.isprintable() or " " in token or "," in token:
        raise ConfigError(f"{where}: a token must be printable ASCII without spaces or commas")
    return token


def read_tokens_file(path: Path) -> list[str]:
    """One token a line; blank lines and lines starting with '#' are ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read token file {path}: {getattr(e, 'strerror', None) or e}") from None
    out = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(_check_token(line, f"{path}:{n}"))
    return out


def tokens_from_env(name: str) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        log.warning("token environment variable is not set", extra={"variable": name})
        return []
    return [_check_token(t.strip(), f"${name}") for t in value.split(",") if t.strip()]


class TokenRegistry:
    """The known tokens, by role. `authenticate` looks at every token whatever matches, in constant time."""

    def __init__(self, device: Iterable[str], admin: Iterable[str]) -> None:
        entries: dict[str, Role] = {t: Role.DEVICE for t in device}
        entries.update({t: Role.ADMIN for t in admin})  # a token in both lists is an admin token
        if not entries:
            raise ConfigError("server.auth: no tokens configured; every call would be refused")
        if any(len(t) < SHORT_TOKEN_WARNING for t in entries):
            log.warning(
                "some bearer tokens are shorter than %d characters; use long random tokens",
                SHORT_TOKEN_WARNING,
            )
        self._entries = [(_digest(t), role, principal_of(t)) for t, role in entries.items()]

    @classmethod
    def from_config(cls, auth: AuthConfig) -> TokenRegistry:
        device: list[str] = []
        admin: list[str] = []
        if auth.device_tokens_file:
            device += read_tokens_file(auth.device_tokens_file)
        if auth.device_tokens_env:
            device += tokens_from_env(auth.device_tokens_env)
        if auth.admin_tokens_file:
            admin += read_tokens_file(auth.admin_tokens_file)
        if auth.admin_tokens_env:
            admin += tokens_from_env(auth.admin_tokens_env)
        registry = cls(device, admin)
        log.info(
            "bearer tokens loaded", extra={"device_tokens": len(set(device)), "admin_tokens": len(set(admin))}
        )
        return registry

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, token: str) -> tuple[Role, str] | None:
        digest = _digest(token)
        found: tuple[Role, str] | None = None
        for known, role, principal in self._entries:
            # No early exit: the time taken does not depend on which token (if any) matched.
            if hmac.compare_digest(known, digest):
                found = (role, principal)
        return found


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of a single `authorization: Bearer <token>` header, or None."""
    values = [v for k, v in metadata or () if k == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    def read(path: Path, what: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as e:
            raise ConfigError(f"server.tls: cannot read the {what} {path}: {e.strerror}") from None

    client_ca = read(tls.client_ca_file, "client CA") if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(read(tls.key_file, "key"), read(tls.cert_file, "certificate"))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or an empty/wildcard host: assume exposed


def warn_if_exposed(cfg: ServerConfig) -> None:
    if is_loopback(cfg.listen):
        return
    missing = [what for what, on in (("TLS", cfg.tls), ("bearer tokens", cfg.auth)) if not on]
    if missing:
        msg = (
            f"edgesel-server: WARNING: listening on {cfg.listen} without {' and '.join(missing)}; "
            "anyone who can reach this port can read and change the learned state (see docs/security.md)"
        )
        log.warning(msg, extra={"listen": cfg.listen, "missing": ", ".join(missing)})
        print(msg, file=sys.stderr, flush=True)


class RateLimiter:
    """A token bucket per principal. Used from the event loop only, so it needs no lock."""

    def __init__(self, rate_per_s: float, burst: int = 0, max_keys: int = RATE_LIMIT_MAX_KEYS) -> None:
        self.rate = rate_per_s
        self.burst = float(burst or max(1, math.ceil(rate_per_s)))
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.max_keys:  # forget the least recently seen (they refill anyway)
            self._buckets.popitem(last=False)
        return allowed
