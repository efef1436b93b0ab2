"""Metering: every call becomes a ``CallRecord`` (role, tokens, latency, cached, error)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from .base import Backend, BackendIdentity, GenRequest, GenResult, Role


@dataclass(frozen=True)
class CallRecord:
    role: Role
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    latency_s: float
    cached: bool
    error: str | None = None
    purpose: str = ""  # e.g. "answer", "hint", "continue", "sample"
    finish_reason: str = ""  # "stop", "length" (cut at max_tokens), ... as the backend said; "" unknown

    @classmethod
    def from_result(cls, role: Role, res: GenResult, purpose: str = "") -> CallRecord:
        return cls(
            role=role,
            input_tokens=res.input_tokens,
            cached_input_tokens=res.cached_input_tokens,
            output_tokens=res.output_tokens,
            latency_s=round(res.latency_s, 4),
            cached=res.cached,
            error=res.error,
            purpose=purpose,
            finish_reason=res.finish_reason,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CallRecord:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class MeterTotals:
    model_calls: int = 0  # calls that reached a model (not served from cache)
    cached_calls: int = 0
    errors: int = 0


class MeteredBackend:
    """Counts every call a strategy makes through it; the per-query records live on the Attempt."""

    def __init__(self, inner: Backend, role: Role) -> None:
        self.inner = inner
        self.role: Role = role
        self.totals = MeterTotals()
        self._lock = threading.Lock()
        self.show_progress = False  # the runner sets it: every batch shows its calls as they finish

    @property
    def identity(self) -> BackendIdentity:
        return self.inner.identity

    def generate(self, requests: list[GenRequest], *, progress: bool = False) -> list[GenResult]:
        if not requests:
            return []
        results = self.inner.generate(requests, progress=progress or self.show_progress)
        if len(results) != len(requests):
            raise RuntimeError(f"backend {self.identity.short()} returned {len(results)} results for {len(requests)} requests")
        with self._lock:
            for r in results:
                if r.cached:
                    self.totals.cached_calls += 1
                else:
                    self.totals.model_calls += 1
                if r.error:
                    self.totals.errors += 1
        return results

    def close(self) -> None:
        self.inner.close()
