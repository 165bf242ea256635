"""The installation id: one random id per app installation, made once and kept in the SDK's cache directory.

The server scopes Select idempotency (``request_id``) to it, so two devices that number their requests
alike never share a decision; it is not a secret and says nothing about the device or its user.
"""

from __future__ import annotations

import logging
import os
import secrets
import string
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "installation_id"
_HEX = frozenset(string.hexdigits.lower())


def default_cache_dir() -> Path:
    """``$EDGESEL_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgesel``, else ``~/.cache/edgesel``."""
    explicit = os.environ.get("EDGESEL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "edgesel" if xdg else Path.home() / ".cache" / "edgesel"


def _valid(text: str) -> bool:
    return len(text) == 32 and set(text) <= _HEX


def load_or_create(cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The id stored under ``cache_dir`` (default: `default_cache_dir()`), created on first use.

    If the directory cannot be written (read-only system image), the id lives for this process only: the
    server then sees a new installation after each restart, which costs nothing but idempotency across it."""
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path / FILE_NAME
    for _attempt in range(2):
        try:
            text = path.read_text(encoding="ascii").strip()
            if _valid(text):
                return text
            log.warning("ignoring a malformed installation id file", extra={"path": str(path)})
            path.unlink()
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as e:
            log.warning("cannot read the installation id: %s", e)
            break
        new = secrets.token_hex(16)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_EXCL: of two processes starting together, one writes; the other reads that one back.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        except OSError as e:
            log.warning(
                "cannot keep the installation id in %s (%s); using one for this process only", path, e
            )
            return new
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(new + "\n")
        return new
    return secrets.token_hex(16)
