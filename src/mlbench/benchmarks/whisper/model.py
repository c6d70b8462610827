"""The Whisper model of ``mlbench infer whisper``: Hugging Face's ``WhisperForConditionalGeneration`` behind one
module that the inference backends run.

:class:`WhisperRunner` takes a padded batch of 16 kHz waveforms, computes Whisper's log-mel features in torch
(inside the timed region, as the reference's vLLM does from the raw audio), runs the encoder once for the batch
and decodes greedily from the English-transcription prompt (``<|startoftranscript|><|en|><|transcribe|>
<|notimestamps|>``) with transformers' ``generate`` (key-value cache; finished rows pad). Its outputs are the
generated ids ``[N, max_new_tokens]`` (-1 after the end) and how many tokens each row generated (its end token
included, as vLLM counts them for the reference's ``n_tokens``).

Model directories are Hugging Face's (large-v3: ``config.json``, safetensors weights, ``preprocessor_config.json``,
the tokenizer files); they are read with safe loaders only (safetensors, no remote code, never the hub). The tiny
and mini sizes build their tokenizer here: byte-level characters (256 ids, no merges) plus Whisper's special
tokens, so that any text round-trips.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlbench.errors import DataError

SAMPLE_RATE = 16_000
N_FFT, HOP = 400, 160  # Whisper's STFT: 25 ms windows every 10 ms
PROMPT = ("<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>")
END = "<|endoftext|>"
# the processor files a model directory must hold besides config.json and the weights
PROCESSOR_FILES = ("preprocessor_config.json",)
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")  # either one (tokenizer.json, or vocab.json + merges.txt)
_DIR_FIX = ("pass a Hugging Face Whisper directory (e.g. openai/whisper-large-v3's files): config.json, "
            "model.safetensors (or shards with model.safetensors.index.json), preprocessor_config.json and the "
            "tokenizer (tokenizer.json, or vocab.json + merges.txt)")


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def char_tokenizer():
    """Byte-level characters (ids 0-255) and Whisper's special tokens after them: every text encodes and decodes."""
    _quiet_transformers()
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import WhisperTokenizer

    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    tok = WhisperTokenizer(vocab=vocab, merges=[], unk_token=END, bos_token=END, eos_token=END, pad_token=END)
    tok.add_special_tokens({"additional_special_tokens": list(PROMPT)})
    return tok


def config(spec: dict[str, Any], vocab_size: int, ids: dict[str, int]):
    """A ``WhisperConfig`` of the size's shape (``spec``: d_model, layers, heads, ffn, n_mels, positions)."""
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=spec["n_mels"], d_model=spec["d_model"],
        encoder_layers=spec["layers"], decoder_layers=spec["layers"], encoder_attention_heads=spec["heads"],
        decoder_attention_heads=spec["heads"], encoder_ffn_dim=spec["ffn"], decoder_ffn_dim=spec["ffn"],
        max_source_positions=spec["source_positions"], max_target_positions=spec["target_positions"],
        decoder_start_token_id=ids[PROMPT[0]], eos_token_id=ids[END], pad_token_id=ids[END], bos_token_id=ids[END],
        dropout=spec.get("dropout", 0.0), begin_suppress_tokens=None, suppress_tokens=None)


def build(spec: dict[str, Any], tokenizer, seed: int | None = None) -> nn.Module:
    """A randomly initialised ``WhisperForConditionalGeneration`` of ``spec``'s shape for ``tokenizer``."""
    _quiet_transformers()
    from transformers import WhisperForConditionalGeneration

    ids = special_ids(tokenizer)
    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(seed)
        # spec["vocab"]: a larger vocabulary (large-v3's 51,866 for --weights random) than the tokenizer's
        return WhisperForConditionalGeneration(config(spec, max(len(tokenizer), spec.get("vocab", 0)), ids)).eval()


def special_ids(tokenizer) -> dict[str, int]:
    """Ids of the prompt and end tokens; a tokenizer without them is not Whisper's (DataError)."""
    out = {}
    for t in (*PROMPT, END):
        i = tokenizer.convert_tokens_to_ids(t)
        if i is None or i == tokenizer.unk_token_id and t != END:
            raise DataError(f"the tokenizer has no {t} token: not a Whisper tokenizer", _DIR_FIX)
        out[t] = int(i)
    return out


def _mel_filters(n_mels: int):
    from transformers import WhisperFeatureExtractor

    return torch.from_numpy(WhisperFeatureExtractor(feature_size=n_mels).mel_filters).float()


class WhisperRunner(nn.Module):
    """Waveforms -> log-mel -> encoder (once per batch) -> greedy decoding; see the module's docstring."""

    def __init__(self, model: nn.Module, tokenizer, *, max_new_tokens: int, mel_filters: torch.Tensor | None = None):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        cfg = model.config
        self.n_mels = int(cfg.num_mel_bins)
        # the encoder's window: two convolutions (stride 1, 2) over frames every 10 ms
        self.frames = int(cfg.max_source_positions) * 2
        self.chunk_samples = self.frames * HOP
        ids = special_ids(tokenizer)
        self.prompt = [ids[t] for t in PROMPT]
        self.end = ids[END]
        self.max_new_tokens = int(min(max_new_tokens, cfg.max_target_positions - len(self.prompt)))
        if self.max_new_tokens < 1:
            raise DataError(f"the decoder holds {cfg.max_target_positions} positions: no room after the "
                            f"{len(self.prompt)}-token prompt", _DIR_FIX)
        self.register_buffer("mel_filters", mel_filters if mel_filters is not None else _mel_filters(self.n_mels),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        from transformers import GenerationConfig

        gen = getattr(model, "generation_config", None)
        self.generation = GenerationConfig(
            do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens, eos_token_id=self.end,
            pad_token_id=self.end, decoder_start_token_id=self.prompt[0],
            suppress_tokens=getattr(gen, "suppress_tokens", None),
            begin_suppress_tokens=getattr(gen, "begin_suppress_tokens", None))

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Whisper's log-mel spectrogram ``[N, n_mels, frames]`` of waveforms ``[N, chunk_samples]``."""
        stft = torch.stft(audio.float(), N_FFT, HOP, window=self.window, return_complex=True)
        power = (stft[..., :-1].abs() ** 2).contiguous()
        mel = torch.clamp(self.mel_filters.T @ power, min=1e-10).log10()
        peak = mel.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(mel, peak - 8.0) + 4.0) / 4.0

    def generate(self, features: torch.Tensor) -> torch.Tensor:
        """Generated ids ``[N, prompt + new]`` (transformers' greedy generate, the encoder run once)."""
        from transformers.generation import GenerationMixin

        prompt = torch.tensor([self.prompt], device=features.device).expand(len(features), -1)
        # GenerationMixin's generate: Whisper's own adds long-form and language detection, which a fixed
        # English-transcription prompt does not use
        return GenerationMixin.generate(self.model, input_features=features.to(self.model.dtype),
                                        decoder_input_ids=prompt, generation_config=self.generation)

    @torch.inference_mode()
    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.generate(self.features(audio))[:, len(self.prompt):]
        ended = out == self.end
        # tokens generated: up to and including the first end token (rows that never ended: all of them)
        first_end = torch.where(ended.any(1), ended.float().argmax(1), torch.full_like(ended[:, 0], out.shape[1],
                                                                                      dtype=torch.long))
        counts = torch.clamp(first_end + 1, max=out.shape[1])
        keep = torch.arange(out.shape[1], device=out.device)[None, :] < first_end[:, None]
        ids = torch.where(keep, out, torch.full_like(out, -1))
        width = self.max_new_tokens
        if ids.shape[1] < width:  # a fixed width: every batch's outputs have the same shape
            ids = torch.cat([ids, ids.new_full((len(ids), width - ids.shape[1]), -1)], 1)
        return ids, counts

    def decode(self, ids) -> list[str]:
        """Texts of generated id rows (-1 padding and special tokens dropped)."""
        n = len(self.tokenizer)  # random weights of a larger vocabulary: ids beyond the tokenizer's are dropped
        rows = [[int(i) for i in row if 0 <= int(i) < n] for row in ids]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)


# ---------------------------------------------------------------- Hugging Face directories

def save_dir(runner: WhisperRunner, dest: str | Path) -> Path:
    """The runner's model, tokenizer and feature extractor as a Hugging Face Whisper directory (safetensors)."""
    _quiet_transformers()
    from transformers import WhisperFeatureExtractor

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    runner.model.save_pretrained(str(dest), safe_serialization=True)
    runner.tokenizer.save_pretrained(str(dest))
    WhisperFeatureExtractor(feature_size=runner.n_mels,
                            chunk_length=runner.chunk_samples // SAMPLE_RATE).save_pretrained(str(dest))
    return dest


def read_dir_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {' '.join(str(exc).split())[:200]}", _DIR_FIX) from None
    if not isinstance(cfg, dict) or cfg.get("model_type") != "whisper":
        kind = cfg.get("model_type") if isinstance(cfg, dict) else type(cfg).__name__
        raise DataError(f"{path} describes a {kind!r} model, not Whisper", _DIR_FIX)
    return cfg


def load_dir(model_dir: str | Path, *, max_new_tokens: int) -> WhisperRunner:
    """A runner over the user's Hugging Face Whisper directory, every file checked first (one-line DataErrors)."""
    from mlbench.llm.llama import weight_files

    d = Path(model_dir)
    files = weight_files(d)  # missing directory, config.json or weights, pickled-only, truncated: DataError
    read_dir_config(d)
    missing = [f for f in PROCESSOR_FILES if not (d / f).is_file()]
    if not any((d / f).is_file() for f in TOKENIZER_FILES):
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    if missing:
        raise DataError(f"model directory {d} has no {' and no '.join(missing)}: the processor is missing",
                        "copy the processor files of the model (its feature extractor and tokenizer) into the "
                        "directory; " + _DIR_FIX)
    _quiet_transformers()
    from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration

    try:
        fe = WhisperFeatureExtractor.from_pretrained(str(d), local_files_only=True)
        tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for broken processor files
        raise DataError(f"cannot read the processor of {d}: {type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}", _DIR_FIX) from None
    try:
        model = WhisperForConditionalGeneration.from_pretrained(
            str(d), local_files_only=True, trust_remote_code=False, use_safetensors=True, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - a mismatch between config.json and the weights, unreadable tensors
        raise DataError(f"cannot load the weights of {d} ({', '.join(f.name for f in files[:2])}): "
                        f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}", _DIR_FIX) from None
    if int(fe.feature_size) != int(model.config.num_mel_bins):
        raise DataError(f"{d}: preprocessor_config.json has {fe.feature_size} mel bins, config.json "
                        f"{model.config.num_mel_bins}", "the processor belongs to another model: " + _DIR_FIX)
    if len(tok) > model.config.vocab_size:
        raise DataError(f"{d}: the tokenizer has {len(tok)} ids, the model {model.config.vocab_size}",
                        "the tokenizer belongs to another model: " + _DIR_FIX)
    return WhisperRunner(model, tok, max_new_tokens=max_new_tokens,
                         mel_filters=torch.from_numpy(fe.mel_filters).float())
