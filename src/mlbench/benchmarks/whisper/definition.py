"""Whisper speech recognition: MLPerf Inference's definition (from v5.1, replacing RNN-T) and its smaller sizes.

Facts from mlcommons/inference (read 2026-12): ``speech2text/README.md`` and ``reference_SUT.py`` (openai/whisper-
large-v3, greedy decoding at temperature 0 from the English-transcription prompt, at most 200 new tokens; the
response is the lower-cased text as the 42 character labels of ``accuracy_eval.py``, with the generated token count
as LoadGen's ``n_tokens``), ``utils/repackage_librispeech.py`` (LibriSpeech dev-clean + dev-other packed into clips
of at most 30 s: 1,633 samples), ``loadgen/mlperf.conf`` (``whisper.*.use_token_latencies = 1``,
``performance_sample_count_override = 1633``, ``Offline.min_query_count = 1633``,
``sample_concatenate_permutation = 1``) and ``tools/submission/submission_checker/constants.py`` (``whisper``:
ACCURACY >= 99% of 100 - 2.0671, i.e. word accuracy 96.9536%; datacenter Offline only). MLPerf defines no Server
or SingleStream bound for whisper: those scenarios run here for measurement (Server with ``--target-latency-ms``).

Inference only: there is no MLPerf training benchmark of Whisper (``mlbench train whisper`` says so).
"""

from mlbench.definition import Benchmark

REFERENCE_WER = 0.020671  # the reference's WER on the 1,633 clips (100 - 2.0671 word accuracy)
# MLPerf scores word accuracy 1 - WER; 99% of it is WER <= 1 - 0.99 * (1 - 0.020671)
INFERENCE_WER_99 = 1 - 0.99 * (1 - REFERENCE_WER)

REFERENCE = Benchmark(
    name="whisper",
    size="reference",
    mlperf_name="whisper",
    task="speech recognition",
    description="Whisper large-v3 (encoder-decoder transformer, greedy decoding) on LibriSpeech dev-clean + dev-other",
    ruleset="5.1",
    division="closed",
    dataset="LibriSpeech dev-clean + dev-other packed into clips of at most 30 s: dev-all-repack.json + WAVs "
            "(mlbench data prepare whisper)",
    metric="wer",
    higher_is_better=False,
    target=INFERENCE_WER_99,
    target_source="MLPerf Inference (submission checker): 99% of the reference's word accuracy 97.9329% "
                  "(WER 2.0671%), i.e. WER <= 3.0464%",
    eval_every_epochs=1,
    runs_required=1,
    max_epochs=1,
    batch_size=32,
    hparams={
        # whisper-large-v3's shape (its config.json): used for --weights random; a --model-dir brings its own
        "d_model": 1280, "layers": 32, "heads": 20, "ffn": 5120, "n_mels": 128, "source_positions": 1500,
        "target_positions": 448, "vocab": 51866,
        "max_new_tokens": 200,  # reference_SUT.py: SamplingParams(max_tokens=200)
        "data": "librispeech", "clips": 0,
    },
    inference_target=INFERENCE_WER_99,
    inference_targets={"99": INFERENCE_WER_99},
    inference_target_source="MLPerf Inference: 99% of the reference's word accuracy (WER 2.0671%), WER <= 3.0464%",
    inference_metric="wer",
    performance_sample_count=1633,  # mlperf.conf: whisper.*.performance_sample_count_override
    server_latency_ms=None,  # MLPerf has no Server scenario for whisper
    loadgen_model_name="whisper",
    inference_name="whisper",
    task_options={"model_dir": "a Hugging Face model directory (config.json, safetensors weights, processor and "
                               "tokenizer files; whisper: openai/whisper-large-v3's files)"},
    in_suite=False,  # inference only: nothing to train in `mlbench run`
    notes="inference only (MLPerf Inference v5.1+); MLPerf requires Offline (datacenter)",
)

MINI = REFERENCE.derive(
    size="mini",
    division="open",
    description="a small Whisper-architecture model (not yet trained here: `mlbench infer whisper --size mini` "
                "refuses)",
    dataset="none yet (no Whisper mini trained here; the size refuses to run)",
    # a placeholder the field requires, never scored (the size refuses); no inference target is given
    target=1 - 0.99 * (1 - 0.62),
    target_source="mlbench mini: none yet (no Whisper mini trained here; the size refuses to run)",
    hparams={"d_model": 192, "layers": 2, "heads": 4, "ffn": 768, "n_mels": 80, "source_positions": 200,
             "target_positions": 64, "vocab": 0, "max_new_tokens": 48, "data": "given", "clips": 0},
    inference_target=None,
    inference_targets={},
    inference_target_source="mlbench mini: none yet (no Whisper mini trained here; the size refuses to run)",
    performance_sample_count=300,
    notes="open division: no built-in model yet",
)

TINY = MINI.derive(
    size="tiny",
    description="a very small random-weights Whisper (built from a config, tokenizer made here), for tests",
    dataset="generated: 12 clips of tone chords with 1-3 word transcripts, in the reference's layout",
    target=1000.0,
    target_source="tests only: random weights transcribe nothing right",
    hparams={"d_model": 64, "layers": 2, "heads": 2, "ffn": 128, "n_mels": 80, "source_positions": 100,
             "target_positions": 12, "max_new_tokens": 6, "data": "tones", "clips": 12},
    inference_target=1000.0,
    inference_targets={"99": 1000.0},
    inference_target_source="tests only",
    performance_sample_count=12,
)

SIZES = {b.size: b for b in (REFERENCE, MINI, TINY)}
