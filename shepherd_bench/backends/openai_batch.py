"""The LLM leg through a batch tier: OpenAI's Batch API (half price) or a local ``vllm run-batch``.

Spec ``openai-batch:<model>``, with the ``openai`` backend's options (``base_url``, ``api_key_env``,
``server``, ``max_retries``, ``timeout_s``) and its request bodies, response parsing, error names, key
scrubbing and prefix flavours (:mod:`.openai_compat`). ``generate(requests)`` writes the requests as
Batch-API JSONL, one line ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`` per
distinct request, the ``custom_id`` being the request's cache key; uploads it (``POST /files``,
``purpose=batch``), creates the batch (``POST /batches``, ``completion_window`` 24h), polls
``GET /batches/{id}`` every ``poll_s`` seconds growing 1.5x per poll up to ``max_poll_s``, downloads
``output_file_id`` and ``error_file_id`` (``GET /files/{id}/content``) and maps the lines back by
``custom_id``, handing each result to ``on_result(index, result)`` so the generation cache stores it.
A batch file holds at most ``max_requests`` requests (OpenAI: 50,000, 200 MB); more go in several
batches, polled together. HTTP calls are retried as the ``openai`` backend retries them.

With ``command`` (e.g. ``command="vllm run-batch"``) no HTTP is spoken and no key is needed: the JSONL
is written to a job folder and ``<command> -i input.jsonl -o output.jsonl`` runs there, detached from
this process (``--model <model>`` is appended when the command has none); its exit status marks the
job finished. The server flavour then defaults to ``vllm`` (a hint continues the assistant turn).

Failures are per request, in ``GenResult.error`` (never graded, no output tokens priced): a line in the
error file (``RateLimitError (HTTP 429): ...`` or ``BatchError (batch_expired): ...``), a request in
neither file (``BatchError (missing): ...``), a batch that expired, failed or was cancelled, and a batch
that could not be submitted, polled or downloaded after the retries. Errors are not cached, so a later
run asks for those requests again.

Resume: each batch, once created, is recorded in a JSON file under ``state_dir`` (default ``batches/``
beside the default generation cache; one folder per backend identity) holding its id and custom ids,
never the key. A later ``generate`` for requests an in-flight batch holds re-attaches to that batch
instead of submitting them again (a killed run resumes where it was); the record is removed once the
batch's results are handed over. A batch's results for requests that ``generate`` no longer asks for
(already cached) are dropped. A poll or download that still fails after the retries leaves the record,
so the next run re-attaches rather than paying again; a batch the server no longer knows (404) is
forgotten. Latency is the batch's turnaround (its creation to its results). Results are priced at the
table's ``<model>@batch`` entry by default (``prices.py``); the identity's kind, ``openai-batch``,
keeps these generations apart from the ``openai`` backend's in the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..config import ConfigError
from .base import BackendIdentity, GenRequest, GenResult, ResultSink, Role, request_key
from .openai_compat import (
    APIError,
    OpenAICompatBackend,
    OpenAISettings,
    Server,
    _chat_body,
    _describe,
    _error_message,
    json_object,
    reply_result,
    send,
    status_name,
    with_retries,
)

log = logging.getLogger(__name__)
ENDPOINT = "/v1/chat/completions"
MAX_REQUESTS = 50_000  # OpenAI's limit per batch file
MAX_BYTES = 190 * 2**20  # under its 200 MB per file
TERMINAL = ("completed", "expired", "failed", "cancelled")


@dataclass(frozen=True)
class BatchSettings(OpenAISettings):
    poll_s: float = 15.0  # the first wait between status polls; each wait is 1.5x the last
    max_poll_s: float = 300.0  # the longest wait between polls
    completion_window: str = "24h"
    max_requests: int = MAX_REQUESTS  # per batch file
    state_dir: str = ""  # in-flight batch records (default: batches/ beside the generation cache)
    command: str = ""  # a local runner of Batch-API JSONL instead of HTTP, e.g. "vllm run-batch"

    def flavour(self) -> Server:
        if self.server == "auto" and self.command:
            return "vllm"
        return super().flavour()


@dataclass(frozen=True)
class BatchJob:
    """A submitted batch: its id and the custom ids (request keys) it holds."""

    batch_id: str
    ids: tuple[str, ...]
    created: float


class BatchRecords:
    """In-flight batches of one backend identity: a JSON file per batch, written when it is created and
    removed once its results are handed over."""

    def __init__(self, root: Path, identity: BackendIdentity) -> None:
        self.identity = identity
        self.dir = root / hashlib.sha256(identity.key().encode()).hexdigest()[:16]

    def jobs(self) -> list[BatchJob]:
        out = []
        for p in sorted(self.dir.glob("*.json")):
            try:
                d = json.loads(p.read_text())
                out.append(BatchJob(str(d["batch_id"]), tuple(str(i) for i in d["custom_ids"]), float(d["created"])))
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable batch record %s", p)
        return out

    def save(self, job: BatchJob) -> None:
        from ..store import write_json_atomic

        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self._path(job), {"batch_id": job.batch_id, "custom_ids": list(job.ids),
                                            "created": job.created, "backend": self.identity.key()})

    def drop(self, job: BatchJob) -> None:
        self._path(job).unlink(missing_ok=True)

    def _path(self, job: BatchJob) -> Path:
        return self.dir / ("".join(c if c.isalnum() or c in "-_" else "_" for c in job.batch_id) + ".json")


class BatchService(Protocol):
    """Where batches run: the HTTP Files and Batches API, or a local command."""

    async def submit(self, jsonl: str) -> str: ...  # the new batch's id

    async def retrieve(self, batch_id: str) -> dict[str, Any]: ...  # the batch object

    async def content(self, file_id: str) -> str: ...

    def forget(self, batch_id: str) -> None: ...


class HTTPBatches:
    """``/files`` and ``/batches`` of an OpenAI-compatible API; every call retried as the SDK retries."""

    def __init__(self, backend: OpenAIBatchBackend, session: Any) -> None:
        self.backend, self.session = backend, session

    async def _json(self, method: str, path: str, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        async def call() -> dict[str, Any]:
            return json_object(await send(self.session, method, self.backend._url(path), **body()))

        return await with_retries(call, max(0, self.backend.settings.max_retries))

    async def submit(self, jsonl: str) -> str:
        import aiohttp

        def upload() -> dict[str, Any]:  # a form is sent once: a new one per attempt
            form = aiohttp.FormData()
            form.add_field("purpose", "batch")
            form.add_field("file", jsonl.encode(), filename="shepherd-bench.jsonl", content_type="application/jsonl")
            return {"data": form}

        file_id = str((await self._json("POST", "/files", upload))["id"])
        s = self.backend.settings
        create = {"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": s.completion_window}
        return str((await self._json("POST", "/batches", lambda: {"json": create}))["id"])

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/batches/{batch_id}", dict)

    async def content(self, file_id: str) -> str:
        url = self.backend._url(f"/files/{file_id}/content")
        return await with_retries(lambda: send(self.session, "GET", url), max(0, self.backend.settings.max_retries))

    def forget(self, batch_id: str) -> None:
        pass


class CommandBatches:
    """Batches run by a local program reading Batch-API JSONL (``-i``) and writing its results (``-o``),
    e.g. ``vllm run-batch``: one folder per job under ``root`` with the input, output, log, and the exit
    status once the program ends. The program runs in its own session, so it outlives a killed run."""

    def __init__(self, argv: list[str], root: Path) -> None:
        self.argv, self.root = argv, root
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    async def submit(self, jsonl: str) -> str:
        batch_id = f"local-{uuid.uuid4().hex[:16]}"
        d = self.root / batch_id
        d.mkdir(parents=True)
        (d / "input.jsonl").write_text(jsonl)
        script = '"$@" >run.log 2>&1; echo $? >rc.part && mv rc.part rc'
        child = subprocess.Popen(["sh", "-c", script, "sh", *self.argv, "-i", "input.jsonl", "-o", "output.jsonl"],
                                 cwd=d, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        (d / "pid").write_text(str(child.pid))
        self._children[batch_id] = child
        return batch_id

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        d = self.root / batch_id
        if not (d / "input.jsonl").is_file():
            raise APIError("NotFoundError", 404, f"no local batch job {d}", False)
        child = self._children.get(batch_id)
        if child is not None:
            child.poll()  # reaps it once it ended
        out: dict[str, Any] = {"id": batch_id, "created_at": (d / "input.jsonl").stat().st_mtime}
        if (d / "output.jsonl").is_file():
            out["output_file_id"] = str(d / "output.jsonl")
        if (d / "rc").is_file():
            rc = (d / "rc").read_text().strip()
            if rc == "0" and "output_file_id" in out:
                return {**out, "status": "completed"}
            return {**out, "status": "failed", "errors": {"data": [{"code": f"exit status {rc}",
                                                                    "message": _tail(d / "run.log")}]}}
        if _alive(d / "pid"):
            return {**out, "status": "in_progress"}
        return {**out, "status": "failed",
                "errors": {"data": [{"code": "stopped", "message": "the batch command ended without an exit status"}]}}

    async def content(self, file_id: str) -> str:
        return Path(file_id).read_text()

    def forget(self, batch_id: str) -> None:
        import shutil

        self._children.pop(batch_id, None)
        shutil.rmtree(self.root / batch_id, ignore_errors=True)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:]) or "(no output)"
    except OSError:
        return "(no log)"


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


class OpenAIBatchBackend(OpenAICompatBackend):
    settings: BatchSettings

    def __init__(self, model: str, settings: BatchSettings | None = None) -> None:
        super().__init__(model, settings or BatchSettings())

    def _load_key(self) -> str:
        return "" if self.settings.command else super()._load_key()

    @property
    def identity(self) -> BackendIdentity:
        s = self.settings
        extra = (("command", s.command),) if s.command else ()
        return BackendIdentity(kind="openai-batch", model=self.model, base_url="" if s.command else s.base_url or "",
                               extra=extra)

    def records(self) -> BatchRecords:
        from .cache import default_cache_path

        root = Path(self.settings.state_dir).expanduser() if self.settings.state_dir else \
            default_cache_path().parent / "batches"
        return BatchRecords(root, self.identity)

    async def _agenerate(self, requests: list[GenRequest], progress: bool,
                         on_result: ResultSink | None) -> list[GenResult]:
        from tqdm import tqdm

        ident = self.identity
        by_id: dict[str, GenRequest] = {}
        indexes: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            cid = request_key(ident, r)
            by_id[cid] = r
            indexes.setdefault(cid, []).append(i)
        results: list[GenResult | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), desc=f"batch {self.model}", disable=not progress, unit="req")

        def deliver(cid: str, res: GenResult) -> None:
            for n, i in enumerate(indexes.pop(cid, [])):
                one = res if n == 0 else GenResult.from_json(res.to_json())  # a repeated request: a copy
                results[i] = one
                if on_result is not None:
                    on_result(i, one)
                bar.update(1)

        records = self.records()
        session = None if self.settings.command else self._session()
        service: BatchService = HTTPBatches(self, session) if session is not None else \
            CommandBatches(self._command(), records.dir / "jobs")
        try:
            jobs = self._attach(records, set(by_id))
            claimed = {cid for job in jobs for cid in job.ids}
            for chunk in self._chunks([cid for cid in by_id if cid not in claimed], by_id):
                job = await self._submit(service, records, chunk, by_id, deliver)
                if job is not None:
                    jobs.append(job)
            await asyncio.gather(*(self._collect(service, records, job, by_id, deliver, bar) for job in jobs))
        finally:
            bar.close()
            if session is not None:
                await session.close()
        return [r if r is not None else GenResult(text="", error="BatchError: no result") for r in results]

    def _attach(self, records: BatchRecords, wanted: set[str]) -> list[BatchJob]:
        """The recorded in-flight batches that hold any of ``wanted``: polled instead of submitting again."""
        jobs = []
        for job in records.jobs():
            if wanted.intersection(job.ids):
                log.info("%s: re-attaching to batch %s", self.identity.short(), job.batch_id)
                jobs.append(job)
                wanted = wanted.difference(job.ids)
        return jobs

    def _chunks(self, ids: list[str], by_id: dict[str, GenRequest]) -> list[list[tuple[str, str]]]:
        """(custom id, JSONL line) groups within the per-file request and size limits."""
        chunks: list[list[tuple[str, str]]] = []
        size = 0
        for cid in ids:
            line = json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": self._body(by_id[cid])})
            if not chunks or len(chunks[-1]) >= max(1, self.settings.max_requests) or size + len(line) > MAX_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append((cid, line))
            size += len(line) + 1
        return chunks

    def _body(self, request: GenRequest) -> dict[str, Any]:
        return {**_chat_body(self.model, request, self.settings.flavour()), "max_completion_tokens": request.max_tokens}

    def _command(self) -> list[str]:
        argv = shlex.split(self.settings.command)
        return argv if "--model" in argv or any(a.startswith("--model=") for a in argv) else [*argv, "--model", self.model]

    async def _submit(self, service: BatchService, records: BatchRecords, chunk: list[tuple[str, str]],
                      by_id: dict[str, GenRequest], deliver: Callable[[str, GenResult], None]) -> BatchJob | None:
        try:
            batch_id = await service.submit("".join(line + "\n" for _, line in chunk))
        except (APIError, OSError) as e:
            for cid, _ in chunk:
                deliver(cid, GenResult(text="", error=self._scrub(f"BatchError: batch not submitted ({_describe(e)})")))
            return None
        job = BatchJob(batch_id, tuple(cid for cid, _ in chunk), time.time())
        try:
            records.save(job)
        except OSError as e:  # the batch still runs and is collected; only a killed run could not re-attach
            log.warning("%s: batch %s not recorded in %s (%s): a killed run would submit it again",
                        self.identity.short(), batch_id, records.dir, e)
        log.info("%s: submitted batch %s (%d requests)", self.identity.short(), batch_id, len(chunk))
        return job

    async def _collect(self, service: BatchService, records: BatchRecords, job: BatchJob,
                       by_id: dict[str, GenRequest], deliver: Callable[[str, GenResult], None], bar: Any) -> None:
        """Poll ``job`` until it ends, then hand over a result for each of its requests still wanted."""
        mine = [cid for cid in job.ids if cid in by_id]

        def fail(message: str) -> None:
            for cid in mine:
                deliver(cid, GenResult(text="", error=self._scrub(message)))

        try:
            batch = await self._wait(service, job.batch_id, bar)
            lines = await self._lines(service, batch)
        except (APIError, OSError) as e:
            gone = isinstance(e, APIError) and e.status == 404
            if gone:
                records.drop(job)
            fail(f"BatchError: batch {job.batch_id} not collected ({_describe(e)}); "
                 + ("it is gone" if gone else "a later run re-attaches to it"))
            return
        latency = max(0.0, time.time() - float(batch.get("created_at") or job.created))
        status = str(batch.get("status"))
        for cid in mine:
            line = lines.get(cid)
            res = self._line_result(line, by_id[cid], latency) if line is not None else \
                GenResult(text="", error=self._scrub(_absent(job.batch_id, batch)), latency_s=latency)
            deliver(cid, res)
        records.drop(job)
        service.forget(job.batch_id)
        log.info("%s: batch %s %s", self.identity.short(), job.batch_id, status)

    async def _wait(self, service: BatchService, batch_id: str, bar: Any) -> dict[str, Any]:
        wait = max(0.0, self.settings.poll_s)
        while True:
            batch = await service.retrieve(batch_id)
            counts = batch.get("request_counts") or {}
            bar.set_postfix_str(f"{batch_id} {batch.get('status')} {counts.get('completed', '?')}/"
                                f"{counts.get('total', '?')}", refresh=False)
            if batch.get("status") in TERMINAL:
                return batch
            await asyncio.sleep(wait)
            wait = min(wait * 1.5, max(self.settings.max_poll_s, self.settings.poll_s))

    async def _lines(self, service: BatchService, batch: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The output and error files' lines by custom id (an unreadable line counts as absent)."""
        out: dict[str, dict[str, Any]] = {}
        for key in ("output_file_id", "error_file_id"):
            if not batch.get(key):
                continue
            for text in (await service.content(str(batch[key]))).splitlines():
                try:
                    line = json.loads(text)
                except ValueError:
                    continue
                if isinstance(line, dict) and line.get("custom_id") is not None:
                    out.setdefault(str(line["custom_id"]), line)
        return out

    def _line_result(self, line: dict[str, Any], request: GenRequest, latency: float) -> GenResult:
        response = line.get("response")
        if not isinstance(response, dict):
            response = {}
        status, body = int(response.get("status_code") or 0), response.get("body")
        if status == 200 and isinstance(body, dict):
            try:
                return reply_result(body, request, self.settings.flavour(), latency)
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                return GenResult(text="", error=f"APIResponseValidationError: malformed result: {e}", latency_s=latency)
        err = line.get("error")
        if status and status != 200:
            message = _error_message(json.dumps(body)) if body else str(err or "(no body)")
            error = _describe(APIError(status_name(status), status, message, False))
        elif isinstance(err, dict):
            error = f"BatchError ({err.get('code') or 'error'}): {err.get('message') or err}"
        else:
            error = f"BatchError: {err or 'a result line without a response'}"
        return GenResult(text="", error=self._scrub(error), latency_s=latency)


def _absent(batch_id: str, batch: dict[str, Any]) -> str:
    """The error of a request in neither file, by what became of its batch."""
    status = str(batch.get("status"))
    if status == "completed":
        return f"BatchError (missing): request missing from batch {batch_id}'s output and error files"
    errors = (batch.get("errors") or {}).get("data") or []
    why = "; ".join(f"{e.get('code') or 'error'}: {e.get('message') or ''}".strip() for e in errors
                    if isinstance(e, dict))
    return f"BatchError (batch_{status}): batch {batch_id} {status} before this request ran" + (f" ({why})" if why else "")


def make(model: str, role: Role, options: dict[str, Any]) -> OpenAIBatchBackend:
    """OpenAI Batch API (half price) or `vllm run-batch`: the openai backend's requests, submitted as a batch."""
    if not model:
        raise ConfigError("the openai-batch backend needs a model name, e.g. openai-batch:gpt-4o-mini")
    from .options import settings_from_options

    settings = settings_from_options("openai-batch", BatchSettings, options)
    if settings.command and settings.base_url:
        raise ConfigError("openai-batch takes base_url (an HTTP Batch API) or command (a local runner such as "
                          "vllm run-batch), not both")
    return OpenAIBatchBackend(model, settings)


__all__ = ["BatchJob", "BatchRecords", "BatchSettings", "OpenAIBatchBackend", "make"]
