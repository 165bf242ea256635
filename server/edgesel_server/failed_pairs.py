"""Models known not to run on a device installation: a Feedback with `failed` for (installation, model)
takes the model out of that installation's eligible models until the model changes (UpdateModel) or the
space is reset. Similar devices are steered away by qoe_model's learned run probability instead.

Derived from the log like the learned state (the installation id travels in the feedback record), kept in
the space's snapshot, and bounded: per model the most recent `MAX_PER_MODEL` installations.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_PER_MODEL = 10_000


class FailedPairs:
    def __init__(self) -> None:
        # model id -> installation ids in the order they failed (a dict as an ordered set)
        self._by_model: dict[str, dict[str, None]] = {}

    def add(self, installation_id: str, model_id: str) -> None:
        seen = self._by_model.setdefault(model_id, {})
        seen.pop(installation_id, None)
        seen[installation_id] = None
        if len(seen) > MAX_PER_MODEL:
            del seen[next(iter(seen))]

    def forget_model(self, model_id: str) -> None:
        """The model changed (a new version may run): offer it to everyone again."""
        self._by_model.pop(model_id, None)

    def clear(self) -> None:
        self._by_model.clear()

    def excluded(self, installation_id: str, candidates: Iterable[str]) -> set[str]:
        """The candidates known not to run on this installation."""
        if not installation_id or not self._by_model:
            return set()
        return {m for m in candidates if installation_id in self._by_model.get(m, ())}

    def of_model(self, model_id: str) -> list[str]:
        return list(self._by_model.get(model_id, ()))

    def restore(self, model_id: str, installations: Iterable[str]) -> None:
        for inst in installations:
            self.add(inst, model_id)
