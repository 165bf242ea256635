"""TOML parsing on every supported Python: the standard library's tomllib from 3.11, its backport tomli
(the same code, a dependency only there) on 3.10."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from tomllib import TOMLDecodeError, load, loads
else:  # pragma: no cover - exercised by the CPython 3.10 smoke run in scripts/test.sh
    from tomli import TOMLDecodeError, load, loads

__all__ = ["TOMLDecodeError", "load", "loads"]
