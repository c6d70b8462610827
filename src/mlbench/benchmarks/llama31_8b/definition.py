"""Llama 3.1 8B pre-training: the MLPerf definition (Training v6.1, ruleset 6.1.0) and its smaller sizes.

Sources (read from the files, not from memory):
- mlcommons/training ``small_llm_pretraining/nemo/``: README (C4 en 3.0.1; the preprocessed files
  ``c4-train.en_<n>_text_document`` and ``c4-validation-91205-samples.en_text_document`` as Megatron ``.bin``/
  ``.idx`` pairs tokenized with the Llama 3.1 tokenizer; evaluation every 12,288 sequences on the first 1,024
  validation sequences, unshuffled; target log perplexity 3.3; warm-up 10% ...), ``pretrain_llama31.py`` (the
  Llama 3.1 8B config at sequence 8,192; AdamW through NeMo's distributed fused Adam with cosine annealing to
  ``0.1 x max_lr``; max_steps 1,200,000; training on ``c4-train.en_6`` unless ``--use_full_dataset``),
  ``config_H200_1x8x1_8b.sh`` (GBS 32, micro batch 2, warm-up 512 steps, ``EVAL_EVERY=12288``).
- NeMo's ``Llama31Config8B`` (32 layers, hidden 4,096, FFN 14,336, 32 heads, 8 KV groups, RoPE base 500,000 with
  Llama 3.1 scaling: factor 8, low/high frequency factors 1/4, original context 8,192; RMSNorm eps 1e-5;
  ``init_method_std`` 0.02; untied output layer) and the Llama 3.1 tokenizer's 128,256 ids.
- mlperf-logging ``compliance_checker/training_6.1.0/closed_llama31_8b.yaml``: max_sequence_length 8,192, AdamW
  beta1 0.9, beta2 0.95, epsilon 1e-5, weight decay 0.1, clip 1.0, eval_samples 1,024, max_steps 1,200,000,
  decay steps = 1,200,000 - warm-up steps, schedule "cosine with linear warmup", eval_accuracy <= 3.3 with
  ``samples_count``; ``rcp_checker/training_6.1.0/rcps_llama31_8b.json``: reference convergence points at global
  batch 16, 32, 64, 96, 128 with their learning rates and warm-up samples (below); 10 runs.
- MLPerf Training rules (training_rules.adoc): evaluation every 12,288 sequences (rounded up to whole batches),
  no evaluations skipped; opt_end_learning_rate = 0.1 x base; dropout 0.
"""

from mlbench.definition import Benchmark

LLAMA31_8B = {  # NeMo Llama31Config8B, as Hugging Face's LlamaConfig fields
    "vocab_size": 128_256, "hidden_size": 4096, "intermediate_size": 14_336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131_072,
    "rope_theta": 500_000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
    "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "bos_token_id": 128_000, "eos_token_id": 128_001,
}

# rcps_llama31_8b.json (training_6.1.0): global batch -> (opt_base_learning_rate, warm-up samples) of the runs that
# made each reference convergence point. Other batch sizes interpolate linearly between the two nearest.
RCP_RECIPES = {16: (4e-4, 256), 32: (8e-4, 4096), 64: (8e-4, 6144), 96: (1e-3, 16_348), 128: (2e-3, 32_768)}

# MLPerf Inference llama3.1-8b (mlcommons/inference language/llama3.1-8b; tools/submission's checker constants):
# ROUGE F-measures x 100 of the reference run (the checker asks 99% of each) and gen_len, the characters generated
# over the 13,368 samples (the checker asks 90-110%); the reference SUT generates at most 128 tokens, greedy.
INFERENCE = {"rouge": {"rouge1": 38.7792, "rouge2": 15.9075, "rougeL": 24.4957, "rougeLsum": 35.793},
             "gen_len": 8_167_644, "samples": 13_368, "max_new_tokens": 128}
INFERENCE_OPTIONS = {
    "model_dir": "language models and whisper: a Hugging Face model directory (config.json, *.safetensors, "
                 "tokenizer and processor files); required at --size reference; with --backend openai only its "
                 "tokenizer is read (whisper: to count the returned text's tokens; without it no tokens/s)",
    "max_new_tokens": "language models: most tokens generated per sample (default: the reference's; other values "
                      "make the run invalid)",
}

REFERENCE = Benchmark(
    name="llama31_8b",
    size="reference",
    mlperf_name="llama31_8b",
    task="language modelling (pre-training)",
    description="Llama 3.1 8B pre-training on C4 (MLPerf Training v6.1 small LLM pre-training)",
    ruleset="6.1.0",
    division="closed",
    dataset="C4 en 3.0.1, the reference's preprocessed Megatron files (c4-train.en_6_text_document.{bin,idx}, "
            "c4-validation-91205-samples.en_text_document.{bin,idx}; Llama 3.1 tokenizer)",
    metric="log_perplexity",
    target=3.3,  # closed_llama31_8b.yaml: eval_accuracy <= 3.3
    target_source="MLPerf Training rules, ruleset 6.1.0 (closed_llama31_8b.yaml): eval log perplexity <= 3.3",
    higher_is_better=False,
    eval_every_epochs=1,
    eval_every_samples=12_288,  # training_rules.adoc: every 12,288 sequences
    max_samples=1_200_000 * 32,  # max_steps (closed_llama31_8b.yaml) x the default global batch of 32
    runs_required=10,  # rcp_checker / benchmark_meta: 10 runs for llama31_8b
    max_epochs=1,
    batch_size=4,  # per process: the reference's global batch 32 on 8 GPUs
    log_progress_in="samples_count",  # closed_llama31_8b.yaml: eval_accuracy carries samples_count
    tunable=("seq_len",),  # --hparam seq_len=N (open division): shorter or longer sequences than the rules' 8,192
    hparams={
        "model": LLAMA31_8B,
        "init_std": 0.02,  # Llama31Config.init_method_std
        "seq_len": 8192,
        "eval_samples": 1024,
        "train_files": ("c4-train.en_6_text_document",),  # pretrain_llama31.py without --use_full_dataset
        "eval_file": "c4-validation-91205-samples.en_text_document",
        "rcp_recipes": RCP_RECIPES,
        "adam_beta1": 0.9, "adam_beta2": 0.95, "adam_eps": 1e-5, "weight_decay": 0.1, "grad_clip": 1.0,
        "max_steps": 1_200_000, "end_lr_factor": 0.1,
        "activation_checkpointing": True,  # our choice: 8,192-token activations of 32 layers do not fit otherwise
        "inference": INFERENCE,  # mlbench infer llama3.1-8b
    },
    input_shape=(8192,),
    notes="MLPerf Training v6.1 (first in v5.1). Published: 84.4 min on 8x B200 (v5.1). Inference: MLPerf's "
          "llama3.1-8b (mlbench infer llama3.1-8b), Llama 3.1 8B Instruct summarising CNN/DailyMail.",
    # inference (mlbench infer llama3.1-8b): the user's weights (--model-dir) on cnn_eval.json (--data-dir)
    inference_name="llama3.1-8b",
    loadgen_model_name="llama3_1-8b",
    loadgen_scenario_models={"Interactive": "llama3_1-8b-interactive", "SingleStream": "llama3_1-8b-edge"},
    inference_metric="rouge1",
    inference_target=round(0.99 * INFERENCE["rouge"]["rouge1"], 4),
    inference_target_source="MLPerf Inference submission checker (llama3.1-8b): 99% of ROUGE-1 38.7792, ROUGE-2 "
                            "15.9075, ROUGE-L 24.4957, ROUGE-Lsum 35.793, and gen_len 90-110% of 8,167,644",
    performance_sample_count=13_368,
    task_options=INFERENCE_OPTIONS,
)

# mini: a small Llama on Python's documentation (Debian python3.11-doc), byte-level BPE trained here.
MINI_MODEL = {
    "vocab_size": 4096, "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256, "rope_theta": 10_000.0,
    "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1,
}

MINI = REFERENCE.derive(
    size="mini",
    division="open",
    description="a 4-layer Llama (hidden 128, 1.8M parameters) pre-trained on Python's documentation sources "
                "(Debian python3.11-doc, reStructuredText), byte-level BPE of 4,096 ids trained here",
    dataset="python3.11-doc reStructuredText sources as Megatron .bin/.idx token files (1 in 20 files held out)",
    target=5.6,
    target_source="mlbench mini: eval log perplexity <= 5.6 on 128 held-out sequences of 256 tokens (a unigram "
                  "model scores 6.73; 4 of 4 seeds measured reach it: seeds 0, 1, 3 at 2,048 samples of the 2,560 "
                  "(5.47, 5.51, 5.47), seed 2 at 1,536 (5.50)); provisional: 4 seeds, not 10, so not in `mlbench run`",
    eval_every_samples=512,
    max_samples=2560,
    runs_required=1,
    batch_size=16,
    hparams={
        "model": MINI_MODEL, "seq_len": 256, "eval_samples": 128, "init_std": 0.02,
        "train_files": ("pydoc-train_text_document",), "eval_file": "pydoc-validation_text_document",
        "rcp_recipes": {16: (3e-3, 128)}, "activation_checkpointing": False,
        "max_steps": 2560 // 16,
    },
    input_shape=(256,),
    notes="open division: a small Llama on offline prose, not comparable with MLPerf results",
    in_suite=False,
    inference_target_source="mlbench mini: not yet defined",
)

TINY = MINI.derive(
    size="tiny",
    description="a 2-layer Llama (hidden 32) on generated text, for tests",
    dataset="generated word sequences as Megatron .bin/.idx token files",
    target=1.0,
    target_source="mlbench tiny: tests only",
    eval_every_samples=256,
    max_samples=4096,
    batch_size=16,
    hparams={
        "model": {**MINI_MODEL, "vocab_size": 320, "hidden_size": 32, "intermediate_size": 96,
                  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "max_position_embeddings": 64},
        "seq_len": 32, "eval_samples": 64, "train_files": ("tiny-train_text_document",),
        "eval_file": "tiny-validation_text_document", "rcp_recipes": {16: (1e-2, 64)}, "max_steps": 4096 // 16,
        # inference: a random model on 24 generated articles; no accuracy bound (tests only)
        "inference": {"rouge": {"rouge1": 0.0}, "gen_len": None, "samples": 24, "max_new_tokens": 16},
    },
    input_shape=(32,),
    inference_target=0.0,
    inference_target_source="mlbench tiny: a random model, tests only (no accuracy bound)",
    performance_sample_count=24,
)

SIZES = {b.size: b for b in (REFERENCE, MINI, TINY)}
