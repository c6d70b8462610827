"""Hostile servers for ``mlbench infer llama3.1-8b --backend openai`` (issue 29): an endpoint nobody listens on,
a server answering HTTP 500, one whose answer is not a stream, one streaming malformed JSON, one that stalls. And for
``mlbench infer whisper --backend openai`` (issue 31, its /v1/audio/transcriptions): nobody listening, HTTP 500, an
answer that is not JSON or has no text, a model name the server does not serve, a stall.
Each: one line naming the problem and the fix, exit 1, no traceback, nothing valid. The servers are real ones on
127.0.0.1 (the scripted standard-library server of tests/llm_servers.py); the run stops at the engine's first
request (its probe), before LoadGen starts. What happens to a request failing mid-run (counted, the run INVALID)
is tested in tests/llama31_8b/test_llama_openai.py and tests/whisper/test_whisper_openai.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalogue import Case, check

from llm_servers import ScriptedServer, ScriptedTranscriber, free_port


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A tiny Llama directory with a trained tokenizer (m/), and a one-row cnn_eval.json (d/): the user's own
    model and data, good ones (built once; the cases only read them)."""
    from mlbench.llm import llama, tokenizer

    root = tmp_path_factory.mktemp("files")
    spec = {"vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 256,
            "bos_token_id": 0, "eos_token_id": 1}
    tok = tokenizer.train([f"the cat {i} sees the dog" for i in range(40)], 300, root / "tok")
    llama.save_hf_dir(llama.build(spec, init_std=0.02), root / "m", tokenizer.Encoder(tok).files())
    (root / "d").mkdir()
    (root / "d" / "cnn_eval.json").write_text(json.dumps([{"input": "x", "tok_input": [0, 5, 6], "output": "y"}]))
    return root


def run(files: Path, endpoint: str) -> tuple[str, ...]:
    return ("infer", "llama3.1-8b", "--size", "reference", "--model-dir", str(files / "m"), "--data-dir",
            str(files / "d"), "--output-dir", "{tmp}/runs", "--quick", "--backend", "openai", "--endpoint", endpoint,
            "--api-model", "m", "--request-timeout", "1")


EXPECT = {"unreachable": "cannot be reached", "500": "refused the request: HTTP 500",
          "json": "did not stream its answer", "malformed": "sent a malformed answer", "stall": "stalled"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(EXPECT))
def test_openai_server_hostile(mode: str, files: Path, tmp_path: Path) -> None:
    if mode == "unreachable":
        out = check(Case(mode, run(files, f"http://127.0.0.1:{free_port()}"), 1, EXPECT[mode]), tmp_path)
    else:
        with ScriptedServer(mode) as srv:
            out = check(Case(mode, run(files, srv.url), 1, EXPECT[mode]), tmp_path)
    assert "fix:" in out


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    from mlbench.benchmarks.whisper import data as wdata

    root = tmp_path_factory.mktemp("tones")
    wdata.tone_set(root, 3, seed=0)
    return root


def whisper_run(tones: Path, endpoint: str, model: str = "whisper-tiny") -> tuple[str, ...]:
    return ("infer", "whisper", "--size", "tiny", "--data-dir", str(tones), "--output-dir", "{tmp}/runs", "--quick",
            "--backend", "openai", "--endpoint", endpoint, "--api-model", model, "--request-timeout", "1")


WHISPER_EXPECT = {"unreachable": "cannot be reached", "500": "refused the request: HTTP 500",
                  "html": "sent a malformed answer: the answer is not JSON",
                  "notext": "sent a malformed answer: the answer has no text",
                  "unknown model": "refused the request: HTTP 400", "stall": "stalled"}


@pytest.mark.parametrize("mode", list(WHISPER_EXPECT))
def test_whisper_transcription_server_hostile(mode: str, tones: Path, tmp_path: Path) -> None:
    case = f"whisper {mode}"
    if mode == "unreachable":
        out = check(Case(case, whisper_run(tones, f"http://127.0.0.1:{free_port()}"), 1, WHISPER_EXPECT[mode]),
                    tmp_path)
    else:
        with ScriptedTranscriber("ok" if mode == "unknown model" else mode) as srv:
            model = "no-such-model" if mode == "unknown model" else srv.model
            out = check(Case(case, whisper_run(tones, srv.url, model), 1, WHISPER_EXPECT[mode]), tmp_path)
    assert "fix:" in out
    if mode == "unknown model":
        assert "no-such-model" in out and "--api-model" in out
