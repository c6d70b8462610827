"""DLRM-DCNv2: the MLPerf definition and its smaller sizes.

Sources (checked against the files, not from memory):
- mlperf-logging ``compliance_checker/training_6.0.0/closed_dlrm_dcnv2.yaml`` (the last training ruleset with
  dlrm_dcnv2; 6.1.0 replaced it by dlrmv4): AUC >= 0.80275 at least once, eval_samples == 89,137,319, Adagrad
  with lr decay 0, weight decay 0, initial accumulator 0, epsilon 1e-8, no warm-up or decay steps.
- ``rcp_checker/training_6.0.0/rcps_dlrm_dcnv2.json``: batch sizes 32,768 .. 160,000 at base lr 0.004; 10 runs.
- MLCommons training ``recommendation_v2/torchrec_dlrm`` (README and dlrm_main.py): table sizes, multi-hot sizes,
  embedding dimension 128, dense arch 512-256-128, over arch 1024-1024-512-256-1, DCN 3 layers of low rank 512,
  Adagrad for embeddings (fused in backward) and for the dense part, evaluation
  ``TOTAL_TRAINING_SAMPLES / (GLOBAL_BATCH_SIZE * 20)`` steps apart (20 times per epoch), one epoch,
  4,195,197,692 training samples (days 0-22), day 23's first half for validation, second half for test.
- MLPerf Inference dlrm-v2 (LoadGen mlperf.conf and the inference rules): 99% and 99.9% of AUC 80.31%,
  Server latency bound 60 ms, performance sample count 204,800, user queries of 100-700 consecutive samples.
"""

from mlbench.definition import Benchmark, ModelFile

# mlcommons/inference recommendation/dlrm_v2/pytorch README, "Downloading model weights" (read 2026-12)
MODEL_FILES = (
    ModelFile("model_weights/ (a folder)", "PyTorch torchsnapshot of the training code's sharded model, 97.31 GB",
              "AUC 80.31%", "MLCommons R2 storage, https://inference.mlcommons-storage.org/metadata/"
              "dlrm-v2-model-weights.uri (mlc-r2-downloader.sh)"),
)

# recommendation_v2/torchrec_dlrm/README.MD, "Running the MLPerf DLRM v2 benchmark"
REFERENCE_TABLE_ROWS = (40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10,
                        2209, 11938, 155, 4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36)
REFERENCE_MULTI_HOT = (3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1)
REFERENCE_TRAIN_SAMPLES = 4_195_197_692  # days 0..22 of the multi-hot Criteo 1TB files
REFERENCE_EVAL_SAMPLES = 89_137_319  # day 23, first half (closed_dlrm_dcnv2.yaml checks this count)
REFERENCE_BATCH = 65_536  # global; one of the RCP batch sizes (rcps_dlrm_dcnv2.json)

REFERENCE = Benchmark(
    name="dlrm",
    size="reference",
    mlperf_name="dlrm_dcnv2",
    task="recommendation (click-through rate)",
    description="DLRM-DCNv2 (26 embedding tables of dimension 128, bottom MLP 512-256-128, 3 low-rank DCNv2 "
                "cross layers, top MLP 1024-1024-512-256-1) on the MLPerf multi-hot Criteo 1TB files",
    ruleset="6.0.0",
    division="closed",
    dataset="MLPerf multi-hot Criteo 1TB: day_{0..23}_dense.npy, day_{d}_sparse_multi_hot.npz (0.npy..25.npy), "
            "day_{d}_labels.npy; day 23 halves for validation/test",
    metric="auc",
    target=0.80275,  # closed_dlrm_dcnv2.yaml: eval_accuracy >= 0.80275
    target_source="MLPerf Training rules, ruleset 6.0.0 (closed_dlrm_dcnv2.yaml): AUC >= 0.80275",
    eval_every_epochs=1,
    eval_every_samples=REFERENCE_TRAIN_SAMPLES // 20,  # 20 evaluations per epoch (reference README)
    max_samples=REFERENCE_TRAIN_SAMPLES,  # one epoch
    runs_required=10,  # rcp_checker: dlrm_dcnv2 needs 10 runs
    max_epochs=1,
    batch_size=REFERENCE_BATCH // 8,  # per process: the global 65,536 on 8 processes
    hparams={
        "table_rows": REFERENCE_TABLE_ROWS,
        "multi_hot": REFERENCE_MULTI_HOT,
        "dense_features": 13,
        "embedding_dim": 128,
        "bottom_mlp": (512, 256, 128),
        "top_mlp": (1024, 1024, 512, 256, 1),
        "dcn_layers": 3,
        "dcn_low_rank": 512,
        "lr": 0.004,  # rcps_dlrm_dcnv2.json opt_base_learning_rate for every batch size
        "adagrad_eps": 1e-8,  # closed_dlrm_dcnv2.yaml
        "train_days": tuple(range(23)),
        "eval_day": 23,
        "train_samples": REFERENCE_TRAIN_SAMPLES,
        "eval_samples": REFERENCE_EVAL_SAMPLES,
        # inference: user queries aggregate consecutive samples (reference: 100-700 from its quantile file)
        "query_min": 100,
        "query_max": 700,
    },
    input_shape=(13,),
    num_classes=2,
    inference_target=0.99 * 0.8031,
    inference_targets={"99": 0.99 * 0.8031, "99.9": 0.999 * 0.8031},
    inference_target_source="MLPerf Inference dlrm-v2: 99% and 99.9% of the FP32 reference AUC 80.31%",
    inference_metric="auc",
    performance_sample_count=204_800,  # LoadGen mlperf.conf: dlrm-v2 performance_sample_count_override
    server_latency_ms=60.0,  # LoadGen mlperf.conf: dlrm-v2.Server.target_latency
    loadgen_model_name="dlrm-v2",
    inference_name="dlrm-v2",
    inference_name_has_target=True,  # dlrm-v2-99, dlrm-v2-99.9
    task_options={"query_sizes": "dlrm: user-item pairs per query (one LoadGen sample), drawn with a fixed seed: "
                                 "uniform:MIN-MAX, fixed:N, or quantile:FILE (the MLPerf reference's "
                                 "--samples-to-aggregate-quantile-file format, e.g. its tools/dist_quantile.txt); "
                                 "default: uniform over the size's range"},
    model_files=MODEL_FILES,
    notes="MLPerf Training retired dlrm_dcnv2 after ruleset 6.0.0 (dlrmv4 in 6.1.0); "
          "MLPerf Inference replaced dlrm-v2 by DLRM-v3 after v5.1",
)

# Mini: a planted synthetic click log (synthetic.py) in the reference's day files. Table sizes and multi-hot
# sizes keep the reference's shape (a few huge tables, many small ones, one wide multi-hot field).
MINI_TABLE_ROWS = (4000, 390, 170, 74, 200, 3, 71, 15, 63, 4000, 3000, 400, 10,
                   220, 119, 155, 4, 97, 14, 4000, 4000, 4000, 590, 129, 108, 36)
MINI_MULTI_HOT = (2, 1, 1, 1, 2, 1, 1, 1, 1, 3, 2, 3, 1, 2, 3, 2, 1, 1, 1, 3, 8, 4, 2, 1, 1, 1)

MINI = REFERENCE.derive(
    model_files=(),
    size="mini",
    division="open",
    description="a small DLRM-DCNv2 (dimension 16, bottom MLP 64-32-16, 3 low-rank (32) cross layers, top MLP "
                "128-64-1) on a planted synthetic click log written in the reference's day files",
    dataset="planted synthetic click log (generated once into the cache): 4 days x 200,000 samples, "
            "day 3 halves for validation/test; the true click probability of every sample is known",
    # Measured (lr 0.05, OMP_NUM_THREADS=1): seed 1 AUC 0.7534 at 150k samples, 0.7609 at 210k, 0.7654 at 300k,
    # 0.7665 at 330k; seed 2 0.7598 at 150k, 0.7652 at 180k (target reached, 0.40 min to train);
    # the target sits a little below, within the first half of the one-epoch budget. The Bayes-optimal
    # AUC of the validation half is 0.7961 (planted.json): the small model is ~0.03 short of it at the target.
    target=0.765,
    target_source="mlbench mini: AUC >= 0.765 on the validation half (Bayes-optimal AUC 0.7961 on the same "
                  "samples); set a little below a measured run (0.7665 at 330k of 600k samples)",
    eval_every_samples=600_000 // 20,
    max_samples=600_000,
    runs_required=1,
    batch_size=512,
    hparams={
        "table_rows": MINI_TABLE_ROWS,
        "multi_hot": MINI_MULTI_HOT,
        "embedding_dim": 16,
        "bottom_mlp": (64, 32, 16),
        "top_mlp": (128, 64, 1),
        "dcn_layers": 3,
        "dcn_low_rank": 32,
        "lr": 0.05,
        "train_days": (0, 1, 2),
        "eval_day": 3,
        "rows_per_day": 200_000,
        "train_samples": 600_000,
        "eval_samples": 100_000,
        "query_min": 20,
        "query_max": 100,
        "synthetic_seed": 20240612,
    },
    inference_target=0.99 * 0.765,
    inference_targets={"99": 0.99 * 0.765, "99.9": 0.999 * 0.765},
    inference_target_source="99% / 99.9% of the mini training target",
    performance_sample_count=1024,
    notes="open division: smaller model and a planted synthetic click log",
)

TINY = MINI.derive(
    size="tiny",
    description="a very small DLRM-DCNv2 (dimension 8) on a tiny planted click log, for tests",
    dataset="planted synthetic click log: 3 days x 8,192 samples, day 2 halves for validation/test",
    target=0.58,
    target_source="mlbench tiny: a smoke target (tests only)",
    eval_every_samples=16384 // 4,
    max_samples=16384,
    batch_size=256,
    hparams={
        "table_rows": tuple(min(r, 50) for r in MINI_TABLE_ROWS),
        "multi_hot": tuple(min(h, 3) for h in MINI_MULTI_HOT),
        "embedding_dim": 8,
        "bottom_mlp": (16, 8),
        "top_mlp": (32, 1),
        "dcn_layers": 2,
        "dcn_low_rank": 8,
        "lr": 0.05,
        "train_days": (0, 1),
        "eval_day": 2,
        "rows_per_day": 8192,
        "train_samples": 16384,
        "eval_samples": 4096,
        "query_min": 2,
        "query_max": 8,
    },
    inference_target=0.55,
    inference_targets={"99": 0.55, "99.9": 0.55},
    inference_target_source="tests only",
    performance_sample_count=256,
)

SIZES = {b.size: b for b in (REFERENCE, MINI, TINY)}
