"""SQLite generation cache keyed by backend identity + full request. JSON values, never pickle.

Safe for concurrent writers (two runs sharing one cache): WAL mode, a busy timeout, and
``INSERT OR IGNORE`` so the first finished answer for a key wins and is never overwritten.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from .base import Backend, BackendIdentity, GenRequest, GenResult, request_key


def default_cache_path() -> Path:
    import os

    from platformdirs import user_cache_dir

    root = os.environ.get("SHEPHERD_BENCH_CACHE")
    base = Path(root) if root else Path(user_cache_dir("shepherd-bench"))
    return base / "generations.sqlite"


class GenerationCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, backend TEXT NOT NULL, "
            "request TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL)"
        )

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
            firsts = [idx[0] for idx in todo.values()]
            fresh = self.inner.generate([requests[i] for i in firsts], progress=progress)
            rows = []
            for (k, idxs), res in zip(todo.items(), fresh, strict=True):
                for j, i in enumerate(idxs):
                    results[i] = res if j == 0 else GenResult.from_json({**res.to_json(), "cached": True})
                if res.ok:
                    rows.append((k, ident, requests[idxs[0]], res))
            self.cache.put_many(rows)
        return [r for r in results if r is not None]

    def close(self) -> None:
        self.inner.close()
