"""One small generic registry with entry-point discovery for plugins.

Built-ins are registered lazily by dotted path (nothing heavy imported until used); plugins arrive via
the entry-point group ``shepherd_bench.<kind>``; a duplicate name is rejected and a failing plugin warns.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


class UnknownName(UserError, KeyError):
    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
        self.message = f"unknown {kind} '{name}'{hint} (shepherd-bench list {plural})"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._targets: dict[str, str | T] = {}
        self._loaded: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str, target: str | T) -> None:
        if name in self._targets:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._targets[name] = target

    def _discover(self) -> None:
        if self._discovered or not self.group:
            self._discovered = True
            return
        self._discovered = True
        for ep in entry_points(group=self.group):
            if ep.name in self._targets:
                if self._targets[ep.name] == ep.value:
                    continue  # our own built-in, declared in pyproject too
                warnings.warn(f"plugin {self.kind} '{ep.name}' ({ep.value}) ignored: name already taken", stacklevel=2)
                continue
            self._targets[ep.name] = ep.value

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._targets)

    def get(self, name: str) -> T:
        self._discover()
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._targets:
            raise UnknownName(self.kind, name, list(self._targets))
        target = self._targets[name]
        obj: Any = _resolve(target) if isinstance(target, str) else target
        self._loaded[name] = obj
        return obj

    def items(self) -> Iterator[tuple[str, T]]:
        for n in self.names():
            try:
                yield n, self.get(n)
            except Exception as e:  # a broken plugin must not take the CLI down
                warnings.warn(f"{self.kind} '{n}' failed to load: {e}", stacklevel=2)


def _resolve(dotted: str) -> Any:
    mod, _, attr = dotted.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj
