"""Hatch metadata hook: edgesel-tools depends on the edgesel-server of its own version (both read
core-rs/Cargo.toml), plus the dependencies listed under [tool.hatch.metadata.hooks.custom]."""

from __future__ import annotations

from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface


class PinServerHook(MetadataHookInterface):
    def update(self, metadata: dict[str, Any]) -> None:
        # hatchling resolves [tool.hatch.version] before it runs metadata hooks, so the version is known here.
        metadata["dependencies"] = [f"edgesel-server=={metadata['version']}", *self.config["dependencies"]]
