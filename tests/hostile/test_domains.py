"""Hostile inputs for the benchmarks and commands added with the workload contract (BERT, DLRM, RNN-T,
Mask R-CNN, data prepare, package): missing or corrupt data, unknown names and targets, absurd options."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogue import Case, check


def _bad_bert_shards(tmp: Path) -> None:
    for d in ("hdf5/training", "hdf5/eval"):
        (tmp / "bert" / d).mkdir(parents=True)
        (tmp / "bert" / d / "part_0.hdf5").write_text("not an HDF5 file\n")


def _dirs(tmp: Path) -> None:
    (tmp / "empty").mkdir()


CASES = [
    Case("bert-reference-no-data", ("train", "bert", "--size", "reference", "--data-dir", "{tmp}/empty",
                                    "--output-dir", "{tmp}/runs"), 1, "no BERT training shards", _dirs),
    Case("bert-corrupt-shard", ("train", "bert", "--size", "tiny", "--data-dir", "{tmp}/bert",
                                "--output-dir", "{tmp}/runs"), 1, "part_0.hdf5", _bad_bert_shards),
    Case("bert-infer-no-squad", ("infer", "bert", "--size", "reference", "--weights", "random", "--quick",
                                 "--data-dir", "{tmp}/empty", "--output-dir", "{tmp}/runs"), 1,
         "dev-v1.1.json not found", _dirs),
    Case("bert-unknown-target", ("infer", "bert", "--size", "tiny", "--target", "95",
                                 "--output-dir", "{tmp}/runs"), 2, "no accuracy target '95'"),
    Case("dlrm-reference-no-data", ("train", "dlrm", "--size", "reference", "--output-dir", "{tmp}/runs"), 1,
         "needs the MLPerf multi-hot Criteo"),
    Case("dlrm-missing-day", ("train", "dlrm", "--size", "reference", "--data-dir", "{tmp}/empty",
                              "--output-dir", "{tmp}/runs"), 1, "missing day file", _dirs),
    Case("rnnt-reference-no-data", ("train", "rnnt", "--size", "reference", "--data-dir", "{tmp}/empty",
                                    "--output-dir", "{tmp}/runs"), 1, "SentencePiece model not found", _dirs),
    Case("maskrcnn-nan-lr", ("train", "maskrcnn", "--size", "tiny", "--lr", "nan", "--output-dir", "{tmp}/runs"),
         2, "must be a finite number"),
    Case("dlrm-query-sizes-nan", ("infer", "dlrm", "--size", "tiny", "--weights", "random", "--quick",
                                  "--query-sizes", "fixed:nan", "--output-dir", "{tmp}/runs"), 2,
         "invalid value for 'query_sizes'"),
    Case("dlrm-query-sizes-absurd", ("infer", "dlrm", "--size", "tiny", "--weights", "random", "--quick",
                                     "--query-sizes", "fixed:99999999999999999999", "--output-dir", "{tmp}/runs"),
         2, "is outside 1.."),
    Case("dlrm-query-sizes-reversed", ("infer", "dlrm", "--size", "tiny", "--weights", "random", "--quick",
                                       "--query-sizes", "uniform:9-3", "--output-dir", "{tmp}/runs"), 2,
         "MIN 9 above MAX 3"),
    Case("dlrm-cuda-graphs-ragged", ("infer", "dlrm", "--size", "tiny", "--weights", "random", "--quick",
                                     "--cuda-graphs", "--output-dir", "{tmp}/runs"), 2,
         "--cuda-graphs needs inputs of a fixed shape per sample"),
    Case("dlrm-unknown-engine", ("train", "dlrm", "--size", "tiny", "--output-dir", "{tmp}/runs"), 2,
         "invalid value for MLBENCH_DLRM_ENGINE", env={"MLBENCH_DLRM_ENGINE": "bogus"}),
    Case("retinanet-unknown-levers", ("train", "retinanet", "--size", "tiny", "--output-dir", "{tmp}/runs"), 2,
         "MLBENCH_RETINANET_LEVERS='bogus' is not understood", env={"MLBENCH_RETINANET_LEVERS": "bogus"}),
    Case("train-unknown-malloc", ("train", "dummy", "--size", "tiny", "--output-dir", "{tmp}/runs"), 2,
         "MLBENCH_MALLOC='bogus' is not understood", env={"MLBENCH_MALLOC": "bogus"}),
    Case("infer-unknown-malloc", ("infer", "dlrm", "--size", "tiny", "--weights", "random", "--quick",
                                  "--output-dir", "{tmp}/runs"), 2,
         "MLBENCH_MALLOC='bogus' is not understood", env={"MLBENCH_MALLOC": "bogus"}),
    Case("prepare-unknown-size", ("data", "prepare", "bert", "--size", "huge"), 2, "invalid choice: 'huge'"),
    Case("prepare-unknown-benchmark", ("data", "prepare", "bertt"), 2, "did you mean 'bert'"),
    Case("package-not-a-run", ("package", "training", "{tmp}/empty", "--submitter", "ACME", "--system", "s1",
                               "-o", "{tmp}/out"), 1, "not an mlbench run directory", _dirs),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_domain_cases(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
