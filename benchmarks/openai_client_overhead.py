"""The ``openai`` backend's client against a plain asyncio streaming client, side by side on the same server.

Both stream ``/v1/completions`` from the same OpenAI-compatible server, the same prompts, the same
``max_tokens`` and ``--concurrency``; the runs alternate (plain, mlbench, plain, mlbench... in pairs, the order
flipped every other pair), so the machine's noise hits both. Reported, as medians over the pairs:

- tokens/s: the server's ``usage.completion_tokens`` summed over the requests / the wall time of the batch,
  mlbench over plain (the target is >= 0.95).
- TTFT p50 of each client (from the request leaving the caller to its first streamed text arriving: mlbench's
  from ``submit()`` in another thread, as LoadGen calls it, to ``on_first_token``), and their difference. Both
  leave out the wait for a free slot (``--concurrency`` requests in flight): a queue, not client overhead.
- mlbench's own time on the TTFT path, timed inside the client on every request: from ``submit()`` to the
  request written to the socket (less the waits for a slot and for a new connection, which the plain client
  has too), plus from the first token's bytes read to the callback called (p50 and p99).
  This is what mlbench adds to a TTFT (the target is < 1 ms at p50); the difference of the two clients' TTFT
  p50s says the same with the server's noise in it.

The plain client is the few lines anyone would write: asyncio streams, one connection per request, the SSE
lines parsed with ``json.loads``, no bookkeeping. Without ``--endpoint`` the script builds a tiny random Llama
and starts ``transformers serve`` on 127.0.0.1 (as the tests do), and stops it at the end.

    python benchmarks/openai_client_overhead.py [--pairs 5] [--requests 16] [--concurrency 4] [--max-tokens 32]
        [--endpoint URL --api-model NAME --model-dir DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mlbench.inference.engines.openai_api import OpenAIEngine  # noqa: E402


async def _plain_one(host: str, port: int, path: str, body: bytes) -> tuple[float, int]:
    """One streamed completion: (seconds to the first text, completion tokens from usage)."""
    t0 = time.perf_counter()  # once it has a slot (mlbench's TTFT here leaves out its wait for a slot too)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    ttft, tokens = None, 0
    while line := await reader.readline():
        if not line.startswith(b"data: {"):
            continue
        event = json.loads(line[6:])
        if ttft is None and event.get("choices") and event["choices"][0].get("text"):
            ttft = time.perf_counter() - t0
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
    writer.close()
    return (ttft if ttft is not None else time.perf_counter() - t0), tokens


def plain_run(url: str, model: str, prompts: list[str], max_tokens: int, concurrency: int) -> dict:
    parts = urlsplit(url)
    path = parts.path.rstrip("/").removesuffix("/v1") + "/v1/completions"

    async def main() -> tuple[list, float]:
        sem = asyncio.Semaphore(concurrency)

        async def one(p: str):
            body = json.dumps({"model": model, "prompt": p, "max_tokens": max_tokens, "temperature": 0,
                               "stream": True, "stream_options": {"include_usage": True}}).encode()
            async with sem:
                return await _plain_one(parts.hostname, parts.port, path, body)

        t0 = time.perf_counter()
        out = await asyncio.gather(*(one(p) for p in prompts))
        return out, time.perf_counter() - t0

    out, wall = asyncio.run(main())
    return {"tokens_per_s": sum(t for _, t in out) / wall, "ttft_p50_ms": statistics.median(f for f, _ in out) * 1e3}


def mlbench_run(engine: OpenAIEngine, prompts: list[str], max_tokens: int) -> dict:
    done: list = []
    errors: list = []
    finished = threading.Event()
    lock = threading.Lock()

    def on_done(rid, comp) -> None:
        with lock:
            done.append(comp)
            if len(done) + len(errors) == len(prompts):
                finished.set()

    def on_error(rid, kind, msg) -> None:
        with lock:
            errors.append(f"{kind}: {msg}")
            if len(done) + len(errors) == len(prompts):
                finished.set()

    def issue() -> None:  # from another thread, as LoadGen issues queries
        for i, p in enumerate(prompts):
            engine.submit(i, prompt_text=p, max_tokens=max_tokens, on_first_token=lambda r, ids: None,
                          on_done=on_done, on_error=on_error)

    t0 = time.perf_counter()
    threading.Thread(target=issue).start()
    finished.wait()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"mlbench's client failed: {errors[0]}")
    return {"tokens_per_s": sum(c.token_count for c in done) / wall,
            "ttft_p50_ms": statistics.median(c.first_token_s - c.queued_s for c in done) * 1e3,
            "client": [c.client_s for c in done]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--endpoint")
    ap.add_argument("--api-model")
    ap.add_argument("--model-dir", help="the served model's folder (its tokenizer); with --endpoint")
    ap.add_argument("--server-args", default="", help="extra `transformers serve` options (no --endpoint)")
    ap.add_argument("--json")
    args = ap.parse_args()

    server = None
    tmp = tempfile.TemporaryDirectory()
    try:
        if args.endpoint:
            url, model, model_dir = args.endpoint, args.api_model, args.model_dir
        else:
            from llm_servers import TransformersServer, tiny_llama_dir

            server = TransformersServer(Path(tmp.name) / "serve.log", extra=tuple(args.server_args.split()))
            model_dir = str(tiny_llama_dir(Path(tmp.name) / "model"))
            model = model_dir
            url = server.wait().warm(model).url
        prompts = [f"the quick brown fox {i} jumps over" for i in range(args.requests)]
        engine = OpenAIEngine(url, model, max_tokens=args.max_tokens, concurrency=args.concurrency,
                              tokenizer_dir=model_dir)
        engine.start()
        plain_run(url, model, prompts[:2], args.max_tokens, args.concurrency)  # warm-up (loads the model)
        mlbench_run(engine, prompts[:2], args.max_tokens)
        pairs, client = [], []
        for k in range(args.pairs):
            runs = {}
            for who in (("plain", "mlbench") if k % 2 == 0 else ("mlbench", "plain")):
                if who == "plain":
                    runs[who] = plain_run(url, model, prompts, args.max_tokens, args.concurrency)
                else:
                    runs[who] = mlbench_run(engine, prompts, args.max_tokens)
                    client += runs[who].pop("client")
            pairs.append(runs)
            print(f"pair {k + 1}: plain {runs['plain']['tokens_per_s']:.1f} tok/s, TTFT p50 "
                  f"{runs['plain']['ttft_p50_ms']:.2f} ms | mlbench {runs['mlbench']['tokens_per_s']:.1f} tok/s, "
                  f"TTFT p50 {runs['mlbench']['ttft_p50_ms']:.2f} ms", flush=True)
        engine.stop()
    finally:
        if server:
            server.close()
        tmp.cleanup()

    def med(f):
        return statistics.median(f(p) for p in pairs)

    client.sort()
    report = {
        "server": "transformers serve (tiny random Llama, CPU)" if server else url,
        "requests": args.requests, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
        "pairs": len(pairs),
        "tokens_per_s_ratio_median": med(lambda p: p["mlbench"]["tokens_per_s"] / p["plain"]["tokens_per_s"]),
        "tokens_per_s": {w: med(lambda p, w=w: p[w]["tokens_per_s"]) for w in ("plain", "mlbench")},
        "ttft_p50_ms": {w: med(lambda p, w=w: p[w]["ttft_p50_ms"]) for w in ("plain", "mlbench")},
        "ttft_p50_difference_ms_median": med(lambda p: p["mlbench"]["ttft_p50_ms"] - p["plain"]["ttft_p50_ms"]),
        "mlbench_client_ttft_share_ms": {"p50": statistics.median(client) * 1e3,
                                         "p99": client[int(0.99 * (len(client) - 1))] * 1e3, "n": len(client)},
    }
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
