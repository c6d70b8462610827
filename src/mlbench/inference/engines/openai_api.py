"""A client for any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, ``transformers serve``): mlbench
measures, the server generates. Text (``api="completions"``): requests stream ``/v1/completions``; a request's
first token is the arrival of the first streamed chunk that carries text (or token ids). Speech
(``api="transcriptions"``): each request POSTs one WAV file as multipart/form-data to ``/v1/audio/transcriptions``
and reads the JSON answer's ``text`` (not streamed: no first token exists before the whole answer). At most
``concurrency`` requests are in flight.

The HTTP/1.1 client is the standard library's asyncio streams (TLS for ``https://``), one event loop in one
thread: callers in other threads (LoadGen's) :meth:`OpenAIEngine.submit` requests, and the callbacks run in
that thread as the bytes arrive. No third-party HTTP package is needed, so the backend works with whatever
``openai``/``httpx`` a machine has, or none.

Output tokens (completions): the server streams text. The token ids are the server's own when it returns them
(vLLM's ``return_token_ids``); otherwise the streamed text re-tokenised with the model's tokenizer. The token count
is the server's (its ids, else the ``usage`` it reports at the end of the stream), otherwise the re-tokenised
text's. :meth:`OpenAIEngine.describe` says which, for result.json. Transcriptions: the server reports no token
count, so the returned text is tokenised with the model's tokenizer when one is given (its text tokens: the server
does not say whether it stopped at an end token); without one nothing is counted (``counts_tokens`` False).

A request that fails (unreachable server, an HTTP error, an answer that is not a stream, malformed JSON, an
error event; for a transcription, an answer that is not a JSON object with a ``text``), is truncated (the stream
ends without a ``finish_reason``, or with one other than ``stop`` or ``length``; the connection closes mid-answer)
or times out (no byte for ``timeout_s``) is counted by kind and reported to ``on_error``; it is
never dropped. The API key is read from an environment variable at start and kept only in memory: it is sent
in the ``Authorization`` header and never written anywhere (messages and :meth:`describe` name the variable).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mlbench.errors import ConfigError, MlbenchError

#: The ends of a complete answer: the model stopped (end of text, a stop string) or reached max_tokens.
FINISHED = frozenset({"stop", "length"})
#: Failure kinds, in the order reports list them.
KINDS = ("unreachable", "http error", "not streamed", "malformed stream", "malformed answer", "server error",
         "truncated", "timed out")
APIS = {"completions": "/v1/completions", "transcriptions": "/v1/audio/transcriptions"}
ANSWER_LIMIT = 16 << 20  # the largest JSON answer read (a transcription's text is a few kB)


@dataclass(frozen=True)
class Endpoint:
    """A server's base URL, split: ``http://host:port`` or ``https://host/prefix`` (``/v1`` may end it)."""

    scheme: str
    host: str
    port: int
    prefix: str  # the path before /v1, without a trailing slash

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        hint = "give the server's base URL, e.g. --endpoint http://127.0.0.1:8000 (or .../v1)"
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as e:
            raise ConfigError(f"--endpoint {url!r} is not a URL ({e})", hint) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--endpoint {url!r} is not an http:// or https:// URL with a host", hint)
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError(f"--endpoint {url!r} has a query, fragment or credentials",
                              "give only scheme, host, port and path; the API key is read from an environment "
                              "variable (--api-key-env)")
        prefix = parts.path.rstrip("/")
        if prefix.endswith("/v1"):
            prefix = prefix[:-3]
        return cls(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), prefix)

    @property
    def url(self) -> str:
        default = 443 if self.scheme == "https" else 80
        port = "" if self.port == default else f":{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}{port}{self.prefix}"

    def path(self, tail: str) -> str:
        return f"{self.prefix}{tail}"


def read_api_key(env_name: str | None, *, required: bool) -> str | None:
    """The API key in the environment variable ``env_name`` (None when unset and not ``required``)."""
    if not env_name:
        return None
    if not env_name.replace("_", "").isalnum():
        raise ConfigError(f"--api-key-env {env_name!r} is not an environment variable's name",
                          "name the variable that holds the key, e.g. --api-key-env OPENAI_API_KEY")
    key = os.environ.get(env_name)
    if key is None and required:
        raise ConfigError(f"the environment variable {env_name} (--api-key-env) is not set",
                          f"export {env_name}=<your key> before the run, or leave --api-key-env out for a server "
                          "without keys")
    if key is not None and ("\n" in key or "\r" in key):
        raise ConfigError(f"the API key in {env_name} holds a line break", f"set {env_name} to the key alone")
    return key or None


@dataclass
class Completion:
    """One finished request. ``token_ids``: the server's or the re-tokenised text's (see ``ids_source``)."""

    text: str
    token_ids: list[int]
    token_count: int
    finish_reason: str
    first_token_s: float  # from submit to the first chunk with text, seconds
    latency_s: float  # from submit to the end of the stream
    usage_tokens: int | None = None  # the server's usage.completion_tokens, when it reported one
    queued_s: float = 0.0  # of first_token_s, the wait for a free slot (``concurrency`` requests in flight)
    client_s: float = 0.0  # of first_token_s, mlbench's own time: submit to the request sent (less the wait for a
    # slot and for a new connection) + the first token's bytes read to the callback


class RequestFailed(Exception):
    def __init__(self, kind: str, message: str, status: int = 0):
        super().__init__(message)
        self.kind, self.message, self.status = kind, message, status


@dataclass
class _Request:
    rid: object
    body: bytes
    on_first_token: Callable | None
    on_done: Callable | None
    on_error: Callable | None
    submitted: float
    # the request line and headers (the engine's for /v1/completions when empty); they hold the API key: no repr
    head: bytes = field(default=b"", repr=False)
    json_answer: bool = False  # a transcription: the answer is one JSON object, not a stream
    started: float = 0.0  # when the event loop took it up
    acquired: float = 0.0  # when it got a slot
    connected: float = 0.0  # when it had a connection
    sent: float = 0.0  # when the request was written
    arrived: float = 0.0  # when the bytes holding the first token were read
    first: float | None = None
    texts: list[str] = field(default_factory=list)
    ids: list[int] | None = None
    finish: str | None = None
    usage: int | None = None
    answer: str | None = None  # a transcription's text (a JSON answer, not a stream)


class _Conn:
    """One keep-alive connection; ``last`` is when a byte last arrived (the stall watchdog reads it)."""

    __slots__ = ("reader", "writer", "last")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer, self.last = reader, writer, time.perf_counter()

    async def line(self) -> bytes:
        data = await self.reader.readuntil(b"\n")
        self.last = time.perf_counter()
        return data

    async def exactly(self, n: int) -> bytes:
        data = await self.reader.readexactly(n)
        self.last = time.perf_counter()
        return data

    async def some(self) -> bytes:
        data = await self.reader.read(65536)
        self.last = time.perf_counter()
        return data

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # a transport already gone
            pass


class OpenAIEngine:
    """Streams completions from an OpenAI-compatible server (or posts audio for transcriptions: ``api``),
    ``concurrency`` requests at a time.

    ``tokenizer_dir``: a folder with the model's ``tokenizer.json``, to turn prompt token ids into the prompt text
    (``prompt_format="text"``, which every server accepts) and to re-tokenise output text when the server does not
    return token ids. ``prompt_format="tokens"`` sends the prompt token ids as they are (vLLM, SGLang accept
    this). ``timeout_s``: the longest wait for the next byte of an answer (and for a connection).
    ``api="transcriptions"``: :meth:`submit_audio` requests; ``tokenizer_dir`` is optional (token counts only) and
    ``max_tokens`` unused (the transcription API has no such field: the server's own limit applies)."""

    name = "openai"

    def __init__(self, endpoint: str, model: str, *, max_tokens: int = 1, concurrency: int = 8,
                 timeout_s: float = 60.0, api_key_env: str | None = "OPENAI_API_KEY",
                 api_key_required: bool = False, tokenizer_dir: str | None = None, prompt_format: str = "text",
                 temperature: float = 0.0, api: str = "completions"):
        if api not in APIS:
            raise ConfigError(f"API {api!r} is not one of {', '.join(APIS)}", f"use one of {', '.join(APIS)}")
        self.api = api
        self.endpoint = Endpoint.parse(endpoint)
        if not model or not model.strip():
            raise ConfigError("--api-model is empty", "give the model name the server serves (GET /v1/models)")
        if not (isinstance(concurrency, int) and 1 <= concurrency <= 100_000):
            raise ConfigError(f"--concurrency {concurrency} is not a whole number from 1 to 100000",
                              "give how many requests may be in flight at once, e.g. --concurrency 16")
        if not (isinstance(max_tokens, int) and max_tokens >= 1):
            raise ConfigError(f"max tokens {max_tokens!r} is not a whole number >= 1", "e.g. --max-new-tokens 128")
        if not (timeout_s == timeout_s and 0 < timeout_s <= 86_400):
            raise ConfigError(f"--request-timeout {timeout_s} is not a number of seconds in (0, 86400]",
                              "e.g. --request-timeout 60")
        if prompt_format not in ("text", "tokens"):
            raise ConfigError(f"prompt format {prompt_format!r} is not text or tokens", "use text or tokens")
        if prompt_format == "text" and tokenizer_dir is None and api == "completions":
            raise ConfigError("the openai backend needs the model's tokenizer to send prompts as text",
                              "give --model-dir (a folder with tokenizer.json), or send token ids to a server "
                              "that accepts them")
        self.model, self.max_tokens, self.concurrency = model, max_tokens, concurrency
        self.timeout_s, self.temperature, self.prompt_format = float(timeout_s), temperature, prompt_format
        self.api_key_env = api_key_env
        self._key = read_api_key(api_key_env, required=api_key_required)
        self._tok = _load_tokenizer(tokenizer_dir) if tokenizer_dir else None
        self.server_ids = False  # set by start(): the server returns token ids
        self.server_usage = False  # the server reports usage at the end of a stream
        self.failures: Counter[str] = Counter()
        self.first_failures: list[str] = []
        self.completed = 0
        self.count_mismatches = 0  # re-tokenised count != the server's usage count
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._idle: list[_Conn] = []
        self._sem: asyncio.Semaphore | None = None
        self._pending = 0
        self._cv = threading.Condition()
        self._ssl = ssl.create_default_context() if self.endpoint.scheme == "https" else None
        self._head = self._headers(APIS["completions"], "application/json", "text/event-stream")

    @property
    def counts_tokens(self) -> bool:
        """Whether output tokens are counted: a completion's always (the server's ids or usage, else the
        re-tokenised text); a transcription's only with a tokenizer (the server reports no count)."""
        return self.api == "completions" or self._tok is not None

    # ----- life cycle -----

    def start(self) -> dict:
        """Start the event loop thread and probe the server with one short request (a clear error if it is
        unreachable, refuses the model, does not stream...). Returns what the probe found."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._sem = asyncio.Semaphore(self.concurrency)
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="mlbench-openai", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            return asyncio.run_coroutine_threadsafe(self._probe(), self._loop).result()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return

        async def close() -> None:
            for c in self._idle:
                c.close()
            self._idle.clear()

        try:
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
        except Exception:  # the loop is stopping anyway
            pass
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> OpenAIEngine:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----- requests -----

    def prompt_text(self, prompt_ids: Sequence[int]) -> str:
        return self._tok.decode(list(prompt_ids), skip_special_tokens=True)

    def submit(self, rid: object, prompt_ids: Sequence[int] | None = None, *, prompt_text: str | None = None,
               on_first_token: Callable | None = None, on_done: Callable | None = None,
               on_error: Callable | None = None, max_tokens: int | None = None) -> None:
        """Queue one request (from any thread). Callbacks, in the engine's thread: ``on_first_token(rid, ids)``,
        then ``on_done(rid, Completion)``; or ``on_error(rid, kind, message)`` once, instead of ``on_done``."""
        if self.prompt_format == "tokens":
            prompt: object = [int(t) for t in prompt_ids]
        else:
            prompt = prompt_text if prompt_text is not None else self.prompt_text(prompt_ids)
        body = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens or self.max_tokens,
                "temperature": self.temperature, "stream": True, **self._extra}
        req = _Request(rid, json.dumps(body).encode(), on_first_token, on_done, on_error, time.perf_counter())
        with self._cv:
            self._pending += 1
        self._loop.call_soon_threadsafe(self._launch, req)

    def submit_audio(self, rid: object, wav: bytes, *, on_done: Callable | None = None,
                     on_error: Callable | None = None) -> None:
        """Queue one transcription of the WAV file ``wav`` (from any thread): ``on_done(rid, Completion)`` with the
        answer's text, or ``on_error(rid, kind, message)`` once instead."""
        req = self._audio_request(rid, wav, on_done, on_error)
        with self._cv:
            self._pending += 1
        self._loop.call_soon_threadsafe(self._launch, req)

    def _audio_request(self, rid: object, wav: bytes, on_done: Callable | None, on_error: Callable | None
                       ) -> _Request:
        """A transcription request: multipart/form-data with the model's name, response_format json and the file."""
        body, content_type = multipart({"model": self.model, "response_format": "json"}, "file", "audio.wav",
                                       "audio/wav", wav)
        return _Request(rid, body, None, on_done, on_error, time.perf_counter(), json_answer=True,
                        head=self._headers(APIS["transcriptions"], content_type, "application/json"))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no request is pending; False if ``timeout`` passed first."""
        with self._cv:
            return self._cv.wait_for(lambda: self._pending == 0, timeout)

    def generate(self, prompts: Sequence[Sequence[int]]) -> list[Completion | RequestFailed]:
        """Every prompt's completion (or its failure), in order: a convenience for scripts and tests."""
        out: list = [None] * len(prompts)

        def done(i, c):
            out[i] = c

        def failed(i, kind, msg):
            out[i] = RequestFailed(kind, msg)

        for i, p in enumerate(prompts):
            self.submit(i, p, on_done=done, on_error=failed)
        self.wait()
        return out

    def describe(self) -> dict:
        """What result.json records about the backend: never the key, only the variable's name."""
        if self.api == "transcriptions":
            ids = count = ("the returned text tokenised with the tokenizer of --model-dir (its text tokens; the "
                           "server reports no count)" if self._tok is not None else
                           "not available: the server reports no token count and no tokenizer was given "
                           "(--model-dir with the served model's tokenizer.json)")
        elif self.server_ids:
            ids, count = "server token ids (return_token_ids)", "server token ids"
        else:
            ids = "output text re-tokenised with the tokenizer of --model-dir"
            count = "server usage.completion_tokens" if self.server_usage else ids
        return {"endpoint": self.endpoint.url, "api": APIS[self.api], "api_model": self.model,
                "concurrency": self.concurrency, "request_timeout_s": self.timeout_s,
                **({"prompt_format": self.prompt_format} if self.api == "completions" else
                   {"audio_format": "WAV, 16 kHz mono 16-bit PCM, one file per sample (response_format json)"}),
                "api_key_env": self.api_key_env if self._key else None,
                "token_ids_source": ids, "token_count_source": count,
                "completed": self.completed, "failed": dict(self.failures),
                "failure_examples": self.first_failures[:5],
                "count_mismatches": self.count_mismatches}

    # ----- the event loop's side -----

    def _headers(self, path: str, content_type: str, accept: str) -> bytes:
        host = self.endpoint.host if self.endpoint.port in (80, 443) else f"{self.endpoint.host}:{self.endpoint.port}"
        lines = [f"POST {self.endpoint.path(path)} HTTP/1.1", f"Host: {host}",
                 f"Content-Type: {content_type}", f"Accept: {accept}", "User-Agent: mlbench"]
        if self._key:
            lines.append(f"Authorization: Bearer {self._key}")
        return ("\r\n".join(lines) + "\r\n").encode("latin-1", "replace")

    _extra: dict = {"stream_options": {"include_usage": True}}

    async def _probe(self) -> dict:
        """One request of one token, first asking for token ids; without them if the server refuses the field.
        Transcriptions: one of half a second of silence."""
        if self.api == "transcriptions":
            req = self._audio_request("probe", silent_wav(0.5), None, None)
            try:
                await self._exchange(req)
            except RequestFailed as e:
                raise _explain(e, self) from None
            return {"text": req.answer}
        prompt: object = [1, 2, 3] if self.prompt_format == "tokens" else "Hello"
        tries = [{"stream_options": {"include_usage": True}, "return_token_ids": True},
                 {"stream_options": {"include_usage": True}}, {}]
        last: RequestFailed | None = None
        for extra in tries:
            body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": self.temperature,
                    "stream": True, **extra}
            req = _Request("probe", json.dumps(body).encode(), None, None, None, time.perf_counter())
            try:
                await self._exchange(req)
            except RequestFailed as e:
                if 400 <= e.status < 500 and e.status not in (401, 403, 404) and extra:
                    last = e
                    continue  # a field this server does not know: try without it
                raise _explain(e, self) from None
            self._extra = {k: v for k, v in extra.items() if k != "return_token_ids" or req.ids is not None}
            self.server_ids = req.ids is not None
            self.server_usage = req.usage is not None
            return {"token_ids": self.server_ids, "usage": self.server_usage, "finish_reason": req.finish}
        raise _explain(last, self)

    def _launch(self, req: _Request) -> None:
        self._loop.create_task(self._run(req))

    async def _run(self, req: _Request) -> None:
        try:
            req.started = time.perf_counter()
            async with self._sem:
                req.acquired = time.perf_counter()
                await self._exchange(req)
            comp = self._complete(req)
        except RequestFailed as e:
            self._fail(req, e.kind, e.message)
        except Exception as e:  # noqa: BLE001 - a request's bug must not hang the run: count it
            self._fail(req, "malformed stream", f"{type(e).__name__}: {e}")
        else:
            self.completed += 1
            if req.on_done:
                req.on_done(req.rid, comp)
        finally:
            with self._cv:
                self._pending -= 1
                self._cv.notify_all()

    def _fail(self, req: _Request, kind: str, message: str) -> None:
        self.failures[kind] += 1
        if len(self.first_failures) < 5:
            self.first_failures.append(f"{kind}: {message}")
        if req.on_error:
            req.on_error(req.rid, kind, message)

    def _complete(self, req: _Request) -> Completion:
        if req.answer is not None:  # a transcription: its text tokenised when a tokenizer is given
            end = time.perf_counter()
            ids = self._tok.encode(req.answer, add_special_tokens=False).ids if self._tok else []
            return Completion(req.answer, ids, len(ids), "stop", end - req.submitted, end - req.submitted, None,
                              req.acquired - req.started, (req.started - req.submitted) + (req.sent - req.connected)
                              + (end - req.arrived))
        text = "".join(req.texts)
        if req.ids is not None:
            ids, count = req.ids, len(req.ids)
        else:
            ids = self._tok.encode(text, add_special_tokens=False).ids if self._tok else []
            count = len(ids)
            if req.usage is not None:
                if req.usage != count:
                    self.count_mismatches += 1
                count = req.usage
        end = time.perf_counter()
        first = req.first if req.first is not None else end
        return Completion(text, ids, count, req.finish or "", first - req.submitted, end - req.submitted,
                          req.usage, req.acquired - req.started,
                          (req.started - req.submitted) + (req.sent - req.connected) + (first - req.arrived))

    def _first_token(self, req: _Request, text: str, ids: list[int] | None) -> None:
        if req.on_first_token:
            if ids is None:
                ids = self._tok.encode(text, add_special_tokens=False).ids[:1] if self._tok else []
            req.on_first_token(req.rid, ids)
        req.first = time.perf_counter()

    async def _connect(self) -> _Conn:
        while self._idle:
            c = self._idle.pop()
            if not c.reader.at_eof() and not c.writer.is_closing():
                return c
            c.close()
        e = self.endpoint
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection(e.host, e.port, ssl=self._ssl, limit=1 << 20), self.timeout_s)
        except asyncio.TimeoutError:
            raise RequestFailed("unreachable", f"no connection to {e.url} within {self.timeout_s:g} s") from None
        except (OSError, ssl.SSLError) as err:
            raise RequestFailed("unreachable", f"cannot connect to {e.url} ({err.strerror or err})") from None
        return _Conn(r, w)

    async def _exchange(self, req: _Request) -> None:
        """Send ``req`` and read its streamed answer into it; raises RequestFailed."""
        conn = await self._connect()
        req.connected = time.perf_counter()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        stalled = []

        def watchdog() -> None:
            nonlocal timer
            idle = time.perf_counter() - conn.last
            if idle >= self.timeout_s:
                stalled.append(idle)
                task.cancel()
            else:
                timer = loop.call_later(self.timeout_s - idle, watchdog)

        reuse = False
        try:
            conn.writer.write((req.head or self._head) + b"Content-Length: %d\r\n\r\n" % len(req.body) + req.body)
            conn.last = req.sent = time.perf_counter()
            timer = loop.call_later(self.timeout_s, watchdog)
            try:
                reuse = await self._read_answer(conn, req)
            finally:
                timer.cancel()
        except asyncio.CancelledError:
            if not stalled:
                raise
            raise RequestFailed("timed out", f"the server sent nothing for {self.timeout_s:g} s "
                                f"({len(req.texts)} chunks received)") from None
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as err:
            raise RequestFailed("truncated", f"the connection closed mid-answer ({type(err).__name__}; "
                                f"{len(req.texts)} chunks received)") from None
        except asyncio.LimitOverrunError:
            raise RequestFailed("malformed stream", "a line of the answer is over 1 MiB") from None
        finally:
            if reuse:
                self._idle.append(conn)
            else:
                conn.close()

    async def _read_answer(self, conn: _Conn, req: _Request) -> bool:
        """Read status, headers and the event stream; True when the connection can be reused."""
        status = await conn.line()
        parts = status.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise RequestFailed("malformed stream", f"the answer does not start with an HTTP status line "
                                f"({status[:60]!r})")
        code = int(parts[1]) if parts[1].isdigit() else 0
        headers: dict[bytes, bytes] = {}
        while True:
            line = await conn.line()
            if line in (b"\r\n", b"\n"):
                break
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        length = headers.get(b"content-length")
        keep = headers.get(b"connection", b"").lower() != b"close" and parts[0] == b"HTTP/1.1"
        if req.json_answer and code == 200:  # a transcription: one JSON object with the text
            body = await _read_body(conn, chunked, length, limit=ANSWER_LIMIT)
            req.arrived = conn.last
            req.answer = _transcription(headers.get(b"content-type", b""), body)
            return keep and (chunked or length is not None)
        if code != 200 or not headers.get(b"content-type", b"").lower().startswith(b"text/event-stream"):
            body = await _read_body(conn, chunked, length, limit=4096)
            detail = _detail(body)
            if code != 200:
                raise RequestFailed("http error", f"HTTP {code} {parts[2:] and parts[2].strip().decode('latin-1')}"
                                    f"{': ' + detail if detail else ''}", code)
            raise RequestFailed("not streamed", "the answer is not a stream (Content-Type "
                                f"{headers.get(b'content-type', b'none').decode('latin-1')})")
        buf = b""
        done = False
        async for piece in _body_pieces(conn, chunked, length):
            buf += piece
            if b"\n" not in buf:
                continue
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if not line.startswith(b"data:"):
                    continue  # blank lines, comments, event: and id: fields
                data = line[5:].strip()
                if data == b"[DONE]":
                    done = True
                    continue
                if done:
                    raise RequestFailed("malformed stream", "data after [DONE]")
                if req.first is None:
                    req.arrived = conn.last
                self._event(req, data)
        if buf.strip().startswith(b"data:"):
            req.arrived = req.arrived or conn.last
            self._event(req, buf.strip()[5:].strip())
        if req.finish is None:
            raise RequestFailed("truncated", f"the stream ended without a finish_reason ({len(req.texts)} chunks "
                                "received)")
        if req.finish not in FINISHED:
            raise RequestFailed("truncated", f"finish_reason {req.finish!r} (expected stop or length)")
        return keep and (chunked or length is not None)

    def _event(self, req: _Request, data: bytes) -> None:
        try:
            ev = json.loads(data)
        except ValueError:
            raise RequestFailed("malformed stream", f"an event is not JSON: {data[:80]!r}") from None
        if not isinstance(ev, dict):
            raise RequestFailed("malformed stream", f"an event is not a JSON object: {data[:80]!r}")
        if "error" in ev:
            err = ev["error"]
            msg = err.get("message", err) if isinstance(err, dict) else err
            raise RequestFailed("server error", f"the server reported an error mid-stream: {str(msg)[:200]}")
        choices = ev.get("choices")
        usage = ev.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            req.usage = usage["completion_tokens"]
        if not choices:
            if choices is None and usage is None:
                raise RequestFailed("malformed stream", f"an event has neither choices nor usage: {data[:80]!r}")
            return
        ch = choices[0]
        if not isinstance(ch, dict):
            raise RequestFailed("malformed stream", f"a choice is not a JSON object: {data[:80]!r}")
        text = ch.get("text") or ""
        ids = ch.get("token_ids")
        if not isinstance(text, str) or (ids is not None and not isinstance(ids, list)):
            raise RequestFailed("malformed stream", f"an event's text or token_ids has the wrong type: {data[:80]!r}")
        if req.finish is not None and (text or ids):
            raise RequestFailed("malformed stream", "text after the finish_reason")
        if text or ids:
            if ids is not None:
                if req.ids is None:
                    req.ids = []
                req.ids.extend(ids)
            if req.first is None:
                self._first_token(req, text, ids)
            req.texts.append(text)
        if ch.get("finish_reason"):
            req.finish = str(ch["finish_reason"])
            if req.first is None:  # an answer without text (only tokens that decode to nothing): its end is its first
                self._first_token(req, "", [] if req.ids is not None else None)


def multipart(fields: dict[str, str], file_field: str, filename: str, file_type: str, data: bytes
              ) -> tuple[bytes, str]:
    """(body, Content-Type) of a multipart/form-data request (RFC 7578): text ``fields``, then one file. The
    boundary is random and checked absent from the file's bytes."""
    import uuid

    while (boundary := f"mlbench-{uuid.uuid4().hex}".encode()) in data:
        pass
    parts = [b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
             % (boundary, k.encode(), v.encode()) for k, v in fields.items()]
    parts.append(b'--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\nContent-Type: %s\r\n\r\n'
                 % (boundary, file_field.encode(), filename.encode(), file_type.encode()))
    return b"".join(parts) + data + b"\r\n--%s--\r\n" % boundary, f"multipart/form-data; boundary={boundary.decode()}"


async def _body_pieces(conn: _Conn, chunked: bool, length: bytes | None):
    """The body's bytes as they arrive: chunked transfer coding, a Content-Length, or up to the connection's end."""
    if chunked:
        while True:
            size_line = await conn.line()
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise RequestFailed("malformed stream", f"a bad chunk size line {size_line[:40]!r}") from None
            if size == 0:
                while (await conn.line()) not in (b"\r\n", b"\n"):
                    pass  # trailers
                return
            data = await conn.exactly(size + 2)
            yield data[:-2]
    elif length is not None:
        left = int(length)
        while left > 0:
            data = await conn.some()
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(data)
            yield data
    else:
        while data := await conn.some():
            yield data


async def _read_body(conn: _Conn, chunked: bool, length: bytes | None, limit: int) -> bytes:
    out = b""
    async for piece in _body_pieces(conn, chunked, length):
        out += piece
        if len(out) > limit:
            break
    return out[:limit]


def _transcription(content_type: bytes, body: bytes) -> str:
    """The ``text`` of a transcription's JSON answer; RequestFailed("malformed answer") for anything else."""
    if not content_type.lower().startswith(b"application/json"):
        raise RequestFailed("malformed answer", "the answer is not JSON (Content-Type "
                            f"{content_type.decode('latin-1') or 'none'}): {body[:60]!r}")
    if len(body) >= ANSWER_LIMIT:
        raise RequestFailed("malformed answer", f"the answer is over {ANSWER_LIMIT >> 20} MiB")
    try:
        data = json.loads(body)
    except ValueError:
        raise RequestFailed("malformed answer", f"the answer is not valid JSON: {body[:80]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise RequestFailed("malformed answer", f"the answer has no text: {body[:80]!r}")
    return data["text"]


def silent_wav(seconds: float, rate: int = 16_000) -> bytes:
    """A WAV file (16-bit PCM mono) of ``seconds`` of silence: the probe's clip. Written here with the standard
    library's ``wave`` (mlbench.speech, where clips are written from samples, is a layer above inference)."""
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(2 * int(seconds * rate)))
    return buf.getvalue()


def _detail(body: bytes) -> str:
    """The error text of an error answer: FastAPI's ``detail``, OpenAI's ``error.message``, else the body's start."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        err = data.get("error")
        msg = data.get("detail") or (err.get("message") if isinstance(err, dict) else err) or data.get("message")
        if msg:
            return str(msg)[:200]
    return json.dumps(data)[:200]


def _explain(e: RequestFailed, engine: OpenAIEngine) -> MlbenchError:
    """The probe's failure as one line naming the problem and the fix."""
    where = f"the OpenAI-compatible server at {engine.endpoint.url}"
    fixes = {
        "unreachable": "start the server, or correct --endpoint (scheme, host and port)",
        "http error": "check --api-model against the server's GET /v1/models, the key in --api-key-env, and "
                      "the server's log",
        "not streamed": "point --endpoint at a server whose /v1/completions streams (OpenAI-compatible)",
        "malformed stream": "point --endpoint at an OpenAI-compatible server; see the server's log",
        "malformed answer": "point --endpoint at an OpenAI-compatible server whose /v1/audio/transcriptions answers "
                            "JSON with a text; see the server's log",
        "server error": "see the server's log",
        "truncated": "see the server's log; the server closed the stream early",
        "timed out": "check the server is not stuck or overloaded, or raise --request-timeout",
    }
    what = {"unreachable": "cannot be reached", "http error": "refused the request",
            "not streamed": "did not stream its answer", "malformed stream": "sent a malformed answer",
            "malformed answer": "sent a malformed answer",
            "server error": "reported an error", "truncated": "cut its answer short",
            "timed out": "stalled"}[e.kind]
    return MlbenchError(f"{where} {what}: {e.message}", fixes[e.kind])


def _load_tokenizer(folder: str):
    from pathlib import Path

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"no tokenizer.json in {folder}", "give --model-dir a Hugging Face model folder with its "
                          "tokenizer files (the openai backend reads only the tokenizer)")
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - a corrupt tokenizer file
        raise ConfigError(f"{path} is not a tokenizer file ({str(e)[:120]})",
                          "copy the model's tokenizer.json again") from None
