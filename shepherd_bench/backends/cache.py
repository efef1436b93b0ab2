"""SQLite generation cache keyed by backend identity + full request. JSON values, never pickle.

Safe for concurrent writers (two runs sharing one cache): WAL mode, a busy timeout, and
``INSERT OR IGNORE`` so the first finished answer for a key wins and is never overwritten.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .base import Backend, BackendIdentity, GenRequest, GenResult, request_key


def default_cache_path() -> Path:
    import os

    from platformdirs import user_cache_dir

    root = os.environ.get("SHEPHERD_BENCH_CACHE")
    base = Path(root) if root else Path(user_cache_dir("shepherd-bench"))
    return base / "generations.sqlite"


def _retry_busy(step: Callable[[], object], deadline_s: float = 60.0) -> None:
    """Run ``step``, retrying while SQLite reports the file locked by another process (some lock
    conflicts, e.g. switching a fresh file to WAL, return at once instead of waiting)."""
    end = time.monotonic() + deadline_s
    delay = 0.01
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > end:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class GenerationCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=60000")
        _retry_busy(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
        _retry_busy(self._create_schema)

    def _create_schema(self) -> None:
        # BEGIN IMMEDIATE takes the write lock first (and waits for it), so two processes creating a
        # fresh cache at once never hit the read-then-upgrade SQLITE_BUSY that skips the busy handler.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, backend TEXT NOT NULL, "
                "request TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL)"
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def get_many(self, keys: list[str]) -> dict[str, GenResult]:
        out: dict[str, GenResult] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                q = f"SELECT key, result FROM generations WHERE key IN ({marks})"
                for k, v in self._db.execute(q, chunk):
                    try:
                        out[k] = GenResult.from_json(json.loads(v))
                    except (ValueError, TypeError):
                        continue  # a damaged row is a miss, never a crash
        return out

    def put_many(self, rows: list[tuple[str, BackendIdentity, GenRequest, GenResult]]) -> None:
        if not rows:
            return
        now = time.time()
        data = [
            (k, ident.key(), json.dumps(req.key_dict(), sort_keys=True), json.dumps(res.to_json()), now)
            for k, ident, req, res in rows
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO generations VALUES (?,?,?,?,?)", data)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedBackend:
    """Wraps a backend: hits come back marked ``cached=True`` with zero latency; only successes are stored."""

    def __init__(self, inner: Backend, cache: GenerationCache) -> None:
        self.inner = inner
        self.cache = cache

    @property
    def identity(self) -> BackendIdentity:
        return self.inner.identity

    def generate(self, requests: list[GenRequest], *, progress: bool = False) -> list[GenResult]:
        ident = self.inner.identity
        keys = [request_key(ident, r) for r in requests]
        hits = self.cache.get_many(list(dict.fromkeys(keys)))
        results: list[GenResult | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            if k in hits:
                h = GenResult.from_json(hits[k].to_json())
                h.cached, h.latency_s = True, 0.0
                results[i] = h
            else:
                todo.setdefault(k, []).append(i)
        if todo:
            items = [(k, requests[idxs[0]]) for k, idxs in todo.items()]
            fresh = self._generate_and_store(ident, items, progress)
            for idxs, res in zip(todo.values(), fresh, strict=True):
                for j, i in enumerate(idxs):
                    results[i] = res if j == 0 else GenResult.from_json({**res.to_json(), "cached": True})
        return [r for r in results if r is not None]

    def _generate_and_store(self, ident: BackendIdentity, items: list[tuple[str, GenRequest]],
                            progress: bool) -> list[GenResult]:
        """Ask the model; store each success. A backend that hands results over as they arrive
        (``streams_results``) has each one stored at once, so a run killed mid-batch loses no finished call."""
        stored: set[int] = set()

        def store(i: int, res: GenResult) -> None:
            if res.ok:
                k, req = items[i]
                self.cache.put_many([(k, ident, req, res)])
                stored.add(i)

        reqs = [req for _, req in items]
        if getattr(self.inner, "streams_results", False):
            fresh = self.inner.generate(reqs, progress=progress, on_result=store)  # type: ignore[call-arg]
        else:
            fresh = self.inner.generate(reqs, progress=progress)
        self.cache.put_many([(k, ident, req, res) for i, ((k, req), res) in enumerate(zip(items, fresh, strict=True))
                             if res.ok and i not in stored])
        return fresh

    def close(self) -> None:
        self.inner.close()
