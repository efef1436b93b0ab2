"""Dataset loading helpers: local files (``--data-dir`` / ``SHEPHERD_BENCH_DATA``) or the public hub copy.

Local layout under the data directory::

    mbpp/mbpp.jsonl, mbpp/sanitized-mbpp.json, gsm8k/test.jsonl, cnk12/<*.jsonl | *.json | *.parquet>

Every loader returns the raw rows together with the sha256 of the file(s) they came from, so a run
manifest can pin exactly which revision of a benchmark it graded.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

DATA_ENV = "SHEPHERD_BENCH_DATA"
Row = dict[str, Any]


class DataError(UserError, RuntimeError):
    """Base class of dataset problems; the message always says how to fix it."""


class DataNotFound(DataError):
    """No local copy and the public copy cannot be fetched (offline, or the hub failed)."""


class DataFormatError(DataError):
    """A data file does not have the expected schema."""


@dataclass(frozen=True)
class RawData:
    rows: list[Row]
    source: str  # a local path or "hf://<hub id>[/<config>]:<split>"
    sha256: str


def data_dir_from(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The data directory: the explicit argument, else ``$SHEPHERD_BENCH_DATA``, else None."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV, "").strip()
    return Path(env).expanduser() if env else None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_files(paths: Sequence[Path]) -> str:
    """One file: its sha256. Several: sha256 over ``name:sha256`` lines, so the set is pinned too."""
    if len(paths) == 1:
        return sha256_file(paths[0])
    lines = "".join(f"{p.name}:{sha256_file(p)}\n" for p in sorted(paths))
    return hashlib.sha256(lines.encode()).hexdigest()


def sha256_rows(rows: Iterable[Row]) -> str:
    """Content hash of rows (used for hub copies, whose raw files we do not see)."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def read_jsonl(path: Path) -> list[Row]:
    rows: list[Row] = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{path}: line {i} is not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataFormatError(f"{path}: line {i} is not a JSON object")
            rows.append(obj)
    return rows


def read_json_array(path: Path) -> list[Row]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise DataFormatError(f"{path}: expected a JSON array of objects")
    return obj


def read_parquet(path: Path) -> list[Row]:
    import pyarrow.parquet as pq  # heavy; comes with `datasets`

    rows: list[Row] = pq.read_table(path).to_pylist()
    return rows


def read_rows(path: Path) -> list[Row]:
    """Rows of a ``.jsonl``, ``.json`` (array) or ``.parquet`` file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".json":
        return read_json_array(path)
    if suffix == ".parquet":
        return read_parquet(path)
    raise DataFormatError(f"{path}: unsupported file type (use .jsonl, .json or .parquet)")


def require_fields(rows: Sequence[Row], fields: Sequence[str], where: str) -> None:
    """Raise DataFormatError naming the file, the row and the first missing field."""
    if not rows:
        raise DataFormatError(f"{where}: no records")
    for i, row in enumerate(rows):
        missing = [f for f in fields if f not in row]
        if missing:
            raise DataFormatError(
                f"{where}: record {i} has no field '{missing[0]}' (expected fields: {', '.join(fields)})"
            )


def hub_offline() -> bool:
    """True when the environment forbids hub access (checked before importing ``datasets``)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    return False


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be reached (one quick HTTP request, proxies honoured), or None.
    ``datasets`` itself retries for tens of seconds before failing; this answers in ``timeout``."""
    import urllib.error
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint + "/api/whoami-v2", method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return None  # an answer (401 without a token): the hub is there
    except (urllib.error.URLError, OSError) as e:
        return f"{endpoint} is unreachable ({getattr(e, 'reason', e)})"
    return None


def missing_message(task: str, relpath: str, hub: str, reason: str) -> str:
    return (
        f"{task}: no local copy of the data and the public copy ({hub}) is unavailable: {reason}. "
        f"Put the file at <data-dir>/{relpath} and pass --data-dir <data-dir> "
        f"(or set {DATA_ENV}=<data-dir>), or go online so `datasets` can fetch {hub}."
    )


@dataclass(frozen=True)
class HubSpec:
    """Where the public copy lives; ``relpath`` is the local file this replaces (for messages)."""

    task: str
    relpath: str
    hub_id: str
    config: str | None
    split: str


def load_hub(spec: HubSpec) -> RawData:
    """Rows of one split of a hub dataset through ``datasets``; fails fast when offline."""
    if hub_offline():
        raise DataNotFound(missing_message(spec.task, spec.relpath, spec.hub_id, "offline mode is set"))
    unreachable = hub_unreachable()
    if unreachable:  # `datasets` would retry for tens of seconds before saying the same
        raise DataNotFound(missing_message(spec.task, spec.relpath, spec.hub_id, unreachable))
    try:
        import datasets

        ds = datasets.load_dataset(spec.hub_id, spec.config, split=spec.split)
        rows = [dict(r) for r in ds]
    except Exception as e:  # any hub/network failure becomes one actionable error
        raise DataNotFound(missing_message(spec.task, spec.relpath, spec.hub_id, f"{type(e).__name__}: {e}")) from e
    config = f"/{spec.config}" if spec.config else ""
    return RawData(rows, f"hf://{spec.hub_id}{config}:{spec.split}", sha256_rows(rows))


def load_local_or_hub(data_dir: str | os.PathLike[str] | None, spec: HubSpec) -> RawData:
    """The local file ``<data_dir>/<relpath>`` if a data dir is set, else the hub copy.

    A data dir that is set but lacks the file is an error (never a silent download).
    """
    base = data_dir_from(data_dir)
    if base is None:
        return load_hub(spec)
    path = base / spec.relpath
    if not path.is_file():
        raise DataNotFound(
            f"{spec.task}: {path} not found. Put the file at <data-dir>/{spec.relpath} "
            f"(data dir from --data-dir or {DATA_ENV}: {base}), or unset both to fetch {spec.hub_id}."
        )
    return RawData(read_rows(path), str(path), sha256_file(path))
