"""Real local servers for the LLM ``openai`` backend's tests (no mocked HTTP).

- :class:`TransformersServer`: ``transformers serve`` (a real OpenAI-compatible server) on 127.0.0.1, serving a
  tiny random Llama saved here as a Hugging Face folder with a tokenizer trained here.
- :class:`ScriptedServer`: a small streaming HTTP server (standard library) that misbehaves on purpose: HTTP 500,
  an answer that is not streamed, malformed JSON, a stalled or cut stream, an unexpected finish_reason. A request
  whose prompt holds ``mode=NAME`` gets that behaviour; the others get the server's ``mode``.
- :class:`ScriptedTranscriber`: a ``/v1/audio/transcriptions`` (standard library) that reads the multipart form,
  keeps each WAV file it was sent and answers the text the test gave for that file, or misbehaves on purpose.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from mlbench.inference.engines.openai_api import multipart

MODES = ("ok", "500", "json", "malformed", "stall", "cut", "abort")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_llama_dir(dest: Path, vocab_size: int = 300) -> Path:
    """A random Llama of a few thousand parameters with a byte-level BPE tokenizer, as a Hugging Face folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mlbench.llm import tokenizer

    texts = [f"the quick brown fox jumps over the lazy dog {i} times, said the {w}"
             for i in range(100) for w in ("cat", "owl")]
    tokenizer.train(texts, vocab_size, dest)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=0, eos_token_id=1)
    LlamaForCausalLM(cfg).save_pretrained(dest)
    return dest


class TransformersServer:
    """``transformers serve`` on a free port of 127.0.0.1 (offline: never the Hub). It starts at once (the imports
    take tens of seconds on a loaded 2-core machine, so build the model meanwhile); :meth:`wait` until /health
    answers. Without ``model_dir`` it loads the model a request names (a local folder)."""

    def __init__(self, log: Path, model_dir: Path | None = None, *, extra: tuple[str, ...] = ()):
        self.log = Path(log)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
               "serve", "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", "--log-level",
               "warning", "--model-timeout", "3600", *extra, *([str(model_dir)] if model_dir else [])]
        self._out = open(self.log, "wb")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=env)

    def wait(self, timeout: float = 240) -> TransformersServer:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self.close()
                raise RuntimeError(f"transformers serve exited ({self.proc.returncode}):\n"
                                   f"{self.log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"transformers serve did not answer /health in {timeout} s")
            time.sleep(0.25)

    def warm_transcription(self, model: str, wav: bytes, timeout: float = 600) -> str:
        """One transcription of ``wav`` by ``model`` (the server loads the model on its first request); its text."""
        body, content_type = multipart({"model": model}, "file", "warm.wav", "audio/wav", wav)
        req = urllib.request.Request(f"{self.url}/v1/audio/transcriptions", body, {"Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())["text"]

    def warm(self, model: str, timeout: float = 600) -> TransformersServer:
        """One short completion of ``model``: the server loads it on the first request (slow on a busy machine),
        which must not count against a test's request timeout."""
        body = json.dumps({"model": model, "prompt": "Hello", "max_tokens": 1}).encode()
        req = urllib.request.Request(f"{self.url}/v1/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
        return self

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the server and any child it started
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self._out.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive), no access log; ``_send`` one whole answer, ``_json`` one as JSON."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code, content_type, raw):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _json(self, code, obj):
        return self._send(code, "application/json", json.dumps(obj).encode())


class _LocalServer:
    """What the scripted servers share: a threaded standard-library HTTP server on 127.0.0.1 (``url``), closed by
    ``close`` or the ``with`` block's end, which also sets ``stop`` (a handler stalling on purpose then ends)."""

    def __init__(self):
        self.seen: list[dict] = []  # each request's headers
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def _serve(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # many connections at once (the default 5 drops some: a 1 s retry)

        self.httpd = Server(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ScriptedServer(_LocalServer):
    """A streaming /v1/completions on 127.0.0.1 that answers by ``mode`` (see the module's text). ``seen``: the
    headers of each request; ``max_in_flight``: the most requests it served at once."""

    def __init__(self, mode: str = "ok", *, tokens: int = 4, delay: float = 0.0):
        assert mode in MODES
        super().__init__()
        self.mode, self.tokens, self.delay = mode, tokens, delay
        self.in_flight = self.max_in_flight = 0
        outer = self

        class Handler(_Handler):
            def do_GET(self):  # noqa: N802
                self._json(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer._lock:
                    outer.seen.append(dict(self.headers))
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    found = re.search(r"mode=(\w+)", str(body.get("prompt", "")))
                    self._answer(found.group(1) if found else outer.mode, body)
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

            def _chunk(self, data: bytes):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _event(self, text="", finish=None):
                ev = {"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": finish}]}
                self._chunk(b"data: " + json.dumps(ev).encode() + b"\n\n")

            def _answer(self, mode, body):
                if mode == "500":
                    return self._json(500, {"error": {"message": "internal failure", "type": "server_error"}})
                if mode == "json":
                    return self._json(200, {"object": "text_completion",
                                            "choices": [{"index": 0, "text": "abc", "finish_reason": "length"}]})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                if mode == "cut":
                    self.send_header("Connection", "close")
                self.end_headers()
                n = min(int(body.get("max_tokens", outer.tokens)), outer.tokens)
                for i in range(n):
                    if outer.delay:
                        time.sleep(outer.delay)
                    if mode == "malformed" and i == 0:
                        self._chunk(b'data: {"choices": [{"text": "x"\n\n')
                    self._event(f" w{i}")
                    if mode == "stall":
                        outer.stop.wait(30)
                        return
                if mode == "cut":
                    self.close_connection = True
                    return  # no finish_reason, no chunked terminator
                self._event("", "abort" if mode == "abort" else "length")
                usage = {"object": "text_completion", "choices": [],
                         "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": n + 3}}
                self._chunk(b"data: " + json.dumps(usage).encode() + b"\n\n")
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

        self._serve(Handler)


TRANSCRIBER_MODES = ("ok", "500", "html", "notext", "stall", "cut", "flaky")


class ScriptedTranscriber(_LocalServer):
    """``POST /v1/audio/transcriptions`` on 127.0.0.1. ``answers``: WAV file bytes -> the text to answer (others get
    ``"?"``); ``model``: the one model it serves (another name: HTTP 400, as transformers serve answers). ``mode``
    applies from request number ``fail_from`` on (the earlier ones, e.g. the client's probe, are answered): ok, 500,
    html (a 200 answer that is not JSON), notext (JSON without a text), stall (no answer), cut (the connection
    closed before the answer's end), flaky (every third request gets HTTP 500). ``files``: the WAV files received;
    ``fields``: each request's form fields other than the file."""

    def __init__(self, mode: str = "ok", *, answers: dict[bytes, str] | None = None, model: str = "whisper-tiny",
                 fail_from: int = 0):
        assert mode in TRANSCRIBER_MODES
        super().__init__()
        self.mode, self.answers, self.model, self.fail_from = mode, answers or {}, model, fail_from
        self.files: list[bytes] = []
        self.fields: list[dict[str, str]] = []
        outer = self

        class Handler(_Handler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                boundary = re.search(r"boundary=(\S+)", self.headers.get("Content-Type", ""))
                if self.path != "/v1/audio/transcriptions" or not boundary:
                    return self._json(404, {"detail": "Not Found"})
                fields, wav = {}, None
                for part in raw.split(b"--" + boundary.group(1).encode())[1:-1]:
                    head, _, value = part[2:-2].partition(b"\r\n\r\n")
                    name = re.search(rb'name="([^"]+)"', head).group(1).decode()
                    if name == "file":
                        wav = value
                    else:
                        fields[name] = value.decode()
                with outer._lock:
                    outer.seen.append(dict(self.headers))
                    n = len(outer.files)
                    outer.files.append(wav)
                    outer.fields.append(fields)
                if fields.get("model") != outer.model:
                    return self._json(400, {"detail": f"Server is pinned to {outer.model!r}; requested "
                                                      f"{fields.get('model')!r}."})
                mode = outer.mode if n >= outer.fail_from else "ok"
                if mode == "flaky":
                    mode = "500" if n % 3 == 0 else "ok"
                if mode == "500":
                    return self._json(500, {"error": {"message": "internal failure", "type": "server_error"}})
                if mode == "html":
                    return self._send(200, "text/html", b"<html>busy</html>")
                if mode == "notext":
                    return self._json(200, {"transcript": "x"})
                if mode == "stall":
                    outer.stop.wait(30)
                    return None
                if mode == "cut":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b'{"text": "ab')
                    self.close_connection = True
                    return None
                return self._json(200, {"text": outer.answers.get(wav, "?")})

        self._serve(Handler)
