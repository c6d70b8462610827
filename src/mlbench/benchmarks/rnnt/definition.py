"""RNN-T speech recognition: the MLPerf definition and its smaller sizes.

Facts from the MLPerf Training rules and mlperf-logging's ``training_3.1.0/closed_rnnt.yaml`` (the last round
with RNN-T: MLPerf retired it after Training v3.1) and the MLCommons reference ``rnn_speech_recognition/pytorch``
(``configs/baseline_v3-1023sp.yaml``, ``scripts/train.sh``): LibriSpeech train-clean-100/360 + train-other-500,
evaluation on dev-clean every epoch, WER <= 0.058, LAMB (epsilon 1e-9, weight decay 1e-3, betas 0.9/0.999,
gradient clipping at norm 1), peak learning rate 0.004 with 6 warm-up and 40 hold epochs then exponential
decay by 0.935 per epoch to 1e-5, EMA 0.999 of the weights for evaluation, global batch 1024, utterances up
to 16.7 s, 6 duration buckets, speed perturbation 0.85-1.15, SpecAugment, greedy decoding with at most 300
symbols per utterance. MLPerf Inference rnnt (retired after v3.1 too, replaced by Whisper): dev-clean,
99% of the FP32 reference accuracy (WER 7.452%), Server latency bound 1000 ms.
"""

from mlbench.definition import Benchmark, ModelFile

# mlcommons/inference retired_benchmarks/speech_recognition/rnnt (README, run.sh; read 2026-12)
MODEL_FILES = (
    ModelFile("rnnt.pt", "PyTorch training checkpoint (characters; the inference model, not the training benchmark's)",
              "WER 7.452%", "https://zenodo.org/record/3662521/files/DistributedDataParallel_1576581068.9962234-"
              "epoch-100.pt"),
)

REFERENCE_WER = 0.07452  # MLPerf Inference: the FP32 reference's WER on dev-clean
# MLPerf Inference scores accuracy as 1 - WER: 99% of it is WER <= 1 - 0.99 * (1 - 0.07452)
INFERENCE_WER_99 = 1 - 0.99 * (1 - REFERENCE_WER)

REFERENCE = Benchmark(
    name="rnnt",
    size="reference",
    mlperf_name="rnnt",
    task="speech recognition",
    description="RNN-T (LSTM encoder with time stacking, prediction and joint networks) on LibriSpeech",
    ruleset="3.1.0",
    division="closed",
    dataset="LibriSpeech as WAV + librispeech-*-wav.json manifests (mlbench data prepare rnnt)",
    metric="wer",
    higher_is_better=False,
    target=0.058,  # closed_rnnt.yaml: eval_accuracy <= 0.058
    target_source="MLPerf Training v3.1 rules (closed_rnnt.yaml): dev-clean WER <= 0.058",
    eval_every_epochs=1,
    runs_required=10,  # MLPerf Training rules: 10 runs for RNN-T
    max_epochs=100,  # the reference's --epochs
    batch_size=128,  # per GPU: global 1024 on 8 GPUs (the reference accumulates 8 steps of 16)
    hparams={
        "sentencepiece": True, "train_splits": ["train-clean-100", "train-clean-360", "train-other-500"],
        "eval_split": "dev-clean",
        "inference_max_duration": 15.0,  # MLPerf Inference rnnt: dev-clean utterances up to 15 s (2,513)
        "n_mels": 80, "stacking": 3, "subsampling": 3, "dither": 1e-5,
        "enc_n_hid": 1024, "enc_pre_rnn_layers": 2, "enc_post_rnn_layers": 3, "enc_stack_time_factor": 2,
        "enc_dropout": 0.1, "pred_n_hid": 512, "pred_rnn_layers": 2, "pred_dropout": 0.3,
        "joint_n_hid": 512, "joint_dropout": 0.3, "forget_gate_bias": 1.0, "weights_init_scale": 0.5,
        "lr": 0.004, "min_lr": 1e-5, "lr_exp_gamma": 0.935, "warmup_epochs": 6, "hold_epochs": 40,
        "weight_decay": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-9, "clip_norm": 1.0, "ema": 0.999,
        "max_duration": 16.7, "num_buckets": 6, "speed": True, "speed_min": 0.85, "speed_max": 1.15,
        "spec_augment": True, "freq_masks": 2, "min_freq": 0, "max_freq": 20, "time_masks": 10, "min_time": 0,
        "max_time": 0.03, "max_symbols": 300, "cache_features": False,
        "time_stretch": 0.0, "freq_warp": 0.0,  # mlbench's feature-level augmentation (features.warp); off
        "ctc_weight": 0.0,  # mlbench's auxiliary CTC loss on the encoder (mini's); the reference has none
    },
    input_shape=(240,),
    inference_target=INFERENCE_WER_99,
    inference_targets={"99": INFERENCE_WER_99},
    inference_target_source="MLPerf Inference rules: 99% of the FP32 reference accuracy (WER 7.452%), "
                            "i.e. WER <= 8.3775%",
    inference_metric="wer",
    performance_sample_count=2513,  # MLPerf Inference: rnnt QSL performance sample count (dev-clean)
    server_latency_ms=1000.0,  # MLPerf Inference: rnnt Server p99 bound
    loadgen_model_name="rnnt",
    model_files=MODEL_FILES,
)

MINI = REFERENCE.derive(
    model_files=(),
    size="mini",
    division="open",
    description="a small RNN-T (plus mlbench's auxiliary CTC loss) on speech synthesised with espeak-ng and flite "
                "(closed vocabulary), speed-perturbed in training",
    dataset="generated (synthetic.py, data v2): 1-3 words of digits, letters and commands; 6,000 training utterances "
            "from espeak-ng (6 accents x 63 voice variants, pitch 0-99, 100-230 words/min) and flite (awb, rms, "
            "kal16, kal) with noise at 8-35 dB SNR; 300 evaluation utterances from held-out voices only "
            "(WAV + manifests, the reference format)",
    # The recipe first sits on the transcript prior (WER ~0.97: it ignores the audio) for ~20-25k samples before
    # the encoder is used; the LR therefore holds ~29k samples (0.3 + 4.5 epochs of 6,000) before decaying.
    # ctc_weight: mlbench's addition for mini (tiny inherits it, to test it), not the reference's (which has none): a linear CTC head on the encoder,
    # its loss (x 0.3) added to the RNN-T loss, so that the encoder learns from the audio from the first epochs
    # instead of after the transcript prior; decoding is still the RNN-T's greedy search (the head is unused there).
    # speed perturbation (the reference's, 0.85-1.15 of the waveform's rate, features recomputed every epoch): the
    # held-out voice that fails most (flite's slt, female, where every flite training voice is male) is a vocal
    # tract the training voices lack; resampling moves the formants (issue 26, benchmarks/rnnt_heldout.py)
    target=0.45,
    target_source="mlbench mini: WER <= 0.45 on held-out voices: espeak-ng's en-us-nyc and en-gb-x-gbcwmd accents "
                  "with variants m2/m4/f2/f4 and flite's slt, none of which trains. Measured with speed "
                  "perturbation (issue 26; benchmarks/rnnt_heldout.py, data v2, OMP_NUM_THREADS=1, loaded shared "
                  "machine): seeds 1 and 2 reach it at epoch 7 of 12 (0.432, 0.439), then 0.394 at epoch 8 and "
                  "0.341 / 0.346 at epoch 12; seed 3 (mlbench train) at epoch 8 (0.407); 10 of 10 random seeds of "
                  "benchmarks/seed_sweep.py at epochs 7-9. Without it (the previous recipe, "
                  "target 0.62): 0.62 at epoch 5 for 5 of 5 seeds, and trained on, 0.387 at epoch 12 for seeds 1 "
                  "and 2 (flite slt 0.78, the espeak-ng held-out accents 0.18-0.30; training voices 0.10-0.12). "
                  "Without the CTC loss: 0.62 only at epochs 7-10, and a random seed of make run missed it at "
                  "0.677. Before (data v1: 2,000 utterances of ~20 voices, 30 epochs): 0.505-0.586 held out. "
                  "Feature time stretch and mel warp stay off (slower learning, no better by epoch 4)",
    runs_required=1,
    # The measured seeds reach the target at epochs 7, 7 and 8 and are at 0.34-0.35 by epoch 12: a slower seed has 4
    # more epochs (at the decaying LR, which does not depend on the budget).
    max_epochs=12,
    batch_size=32,
    hparams={
        "sentencepiece": False, "train_samples": 6000, "eval_samples": 300, "synth": "speech",
        "train_splits": ["train"], "eval_split": "dev", "inference_max_duration": None,  # the generated set
        "enc_n_hid": 192, "enc_pre_rnn_layers": 1, "enc_post_rnn_layers": 1, "enc_dropout": 0.1,
        "pred_n_hid": 96, "pred_rnn_layers": 1, "pred_dropout": 0.1, "joint_n_hid": 160, "joint_dropout": 0.1,
        "weights_init_scale": 1.0, "lr": 0.01, "warmup_epochs": 0.3, "hold_epochs": 4.5, "lr_exp_gamma": 0.6,
        "ema": 0.0, "ctc_weight": 0.3,
        "speed": True, "time_masks": 2, "max_freq": 10, "cache_features": True, "num_buckets": 4,
    },
    inference_target=1 - 0.99 * (1 - 0.45),  # 99% of the mini target's accuracy (1 - WER), as MLPerf forms it
    inference_targets={"99": 1 - 0.99 * (1 - 0.45)},
    inference_target_source="mlbench mini: 99% of the training target's accuracy (1 - WER), WER <= 0.4555",
    performance_sample_count=300,
    notes="open division: smaller model and synthetic data",
)

TINY = MINI.derive(
    in_suite=True,
    size="tiny",
    description="a very small RNN-T on generated tone 'speech' (a chord per character), for tests",
    dataset="generated: words of 4 letters as tone chords with noise (320 train / 48 eval, WAV + manifests)",
    target=0.9,
    target_source="mlbench tiny: a smoke target (tests only): measured WER 0.93 at epoch 4, 0.87 at epoch 5",
    max_epochs=8,
    batch_size=16,
    hparams={"train_samples": 320, "eval_samples": 48, "synth": "tones", "enc_n_hid": 64, "pred_n_hid": 32,
             "joint_n_hid": 64, "weights_init_scale": 0.5, "lr": 0.02, "warmup_epochs": 1, "hold_epochs": 4,
             "lr_exp_gamma": 0.8, "time_masks": 0, "speed": False,
             "num_buckets": 2},
    inference_target=0.9,
    inference_targets={"99": 0.9},
    inference_target_source="tests only",
    performance_sample_count=48,
)

SIZES = {b.size: b for b in (REFERENCE, MINI, TINY)}
