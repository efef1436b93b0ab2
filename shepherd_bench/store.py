"""Run folders: ``manifest.json``, append-only ``samples.jsonl``, ``summary.json``; resume after a crash."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .config import ConfigError


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: give it the mode a plain open() would
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread); 022 if unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest_path = root / "manifest.json"
        self.samples_path = root / "samples.jsonl"
        self.summary_path = root / "summary.json"

    def open(self, manifest: dict[str, Any], fingerprint: str) -> None:
        """Create the folder, or check that an existing one measured the same thing (then resume)."""
        if self.manifest_path.exists():
            old = json.loads(self.manifest_path.read_text())
            if old.get("fingerprint") != fingerprint:
                raise ConfigError(
                    f"{self.root} holds a run with a different configuration "
                    f"(fingerprint {old.get('fingerprint')} != {fingerprint}); pass another --out or delete it"
                )
            manifest = {**manifest, "created": old.get("created", manifest.get("created")),
                        "resumed": int(old.get("resumed", 0)) + 1}
        write_json_atomic(self.manifest_path, manifest)

    def load_done(self) -> dict[str, dict[str, Any]]:
        """Finished samples by query id. A torn last line (killed mid-write) is cut off and reported."""
        if not self.samples_path.exists():
            return {}
        raw = self.samples_path.read_bytes()
        done: dict[str, dict[str, Any]] = {}
        good_end = 0
        pos = 0
        for line in raw.splitlines(keepends=True):
            pos += len(line)
            if not line.endswith(b"\n"):
                break
            try:
                rec = json.loads(line)
            except ValueError:
                break
            done.setdefault(rec["query_id"], rec)
            good_end = pos
        if good_end < len(raw):
            with open(self.samples_path, "r+b") as f:
                f.truncate(good_end)
            print(f"note: repaired {self.samples_path}: dropped {len(raw) - good_end} bytes of a torn last record",
                  file=sys.stderr)  # stdout may carry --json output
        return done

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        data = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
        with open(self.samples_path, "a", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def read_samples(self) -> list[dict[str, Any]]:
        return list(self.load_done().values())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)
