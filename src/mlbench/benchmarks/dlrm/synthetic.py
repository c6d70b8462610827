"""A planted synthetic click log in the reference's day files (mini and tiny).

Every sample has 26 categorical fields, each a multi-hot bag of ``h_k`` ids drawn from a Zipf law over its
table (popular rows shuffled through the table), and 13 log-normal dense features (stored as ``log(1 + x)``,
float32, as the reference stores its pre-processed dense features). The label is drawn from a known logit:

    logit = bias + sum_j a_j tanh(d_j - c_j)                       first order, dense
          + sum_k mean(w_k[ids_k])                                 first order, every field
          + sum_(k,l) in PAIRS  g_kl <mean(u_k[ids_k]), mean(u_l[ids_l])>    factorised pairwise interactions
          + 0.8 tanh(2 mean(w_0[ids_0])) * (d_0 - c_0)             a non-linearity across a field and a feature

so the click probability ``sigmoid(logit)`` of every sample is known. It is written next to the evaluation day
(``day_{d}_click_probability.npy``, not part of the reference's format and ignored by the loader), and
``planted.json`` holds the Bayes-optimal AUC of the validation and test halves: the AUC of the true
probability against the drawn labels, which no model can beat on these samples (in expectation).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlbench.benchmarks.dlrm import auc as auc_mod
from mlbench.benchmarks.dlrm.days import DENSE_FEATURES, SPARSE_FEATURES, day_paths
from mlbench.data import folders

FACTORS = 4
PAIRS = ((0, 9), (0, 19), (9, 20), (19, 21), (10, 11), (2, 13), (3, 20), (21, 22), (1, 4), (11, 20))
SCALE = 0.52  # overall logit scale: Bayes-optimal AUC about 0.80 (the reference reaches 0.8031 on Criteo)
VERSION = 1  # bump when the generator changes: cached data is made again


def _truth(rows: tuple[int, ...], seed: int) -> dict[str, list[np.ndarray] | np.ndarray]:
    rng = np.random.default_rng(seed)
    w = [rng.normal(0.0, 0.6, n) for n in rows]
    u = [rng.normal(0.0, 1.0, (n, FACTORS)) for n in rows]
    perm = [rng.permutation(n) for n in rows]
    return {"w": w, "u": u, "perm": perm, "a": rng.normal(0.0, 0.3, DENSE_FEATURES),
            "mu": rng.uniform(0.0, 2.0, DENSE_FEATURES), "sigma": rng.uniform(0.5, 1.5, DENSE_FEATURES),
            "g": rng.normal(0.0, 0.5, len(PAIRS))}


def _zipf_ids(rng: np.random.Generator, n_rows: int, shape: tuple[int, int], perm: np.ndarray) -> np.ndarray:
    # Zipf(1.1) truncated to the table: inverse-CDF sampling over ranks 1..n
    ranks = np.arange(1, n_rows + 1, dtype=np.float64)
    cdf = np.cumsum(ranks ** -1.1)
    cdf /= cdf[-1]
    r = np.searchsorted(cdf, rng.random(shape), side="right")
    return perm[np.minimum(r, n_rows - 1)].astype(np.int32)


def generate_day(rows_n: int, table_rows: tuple[int, ...], multi_hot: tuple[int, ...], truth: dict,
                 seed: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """(dense float32 [N,13], sparse [int32 [N,h_k]] * 26, labels int32 [N,1], click probability float64 [N])."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(truth["mu"], truth["sigma"], (rows_n, DENSE_FEATURES))
    dense = np.log1p(x).astype(np.float32)
    centred = dense.astype(np.float64) - (truth["mu"] + 0.2)
    logit = -1.2 + (np.tanh(centred) * truth["a"]).sum(1)
    sparse, wbar, ubar = [], [], []
    for k in range(SPARSE_FEATURES):
        ids = _zipf_ids(rng, table_rows[k], (rows_n, multi_hot[k]), truth["perm"][k])
        sparse.append(ids)
        wbar.append(truth["w"][k][ids].mean(1))
        ubar.append(truth["u"][k][ids].mean(1))
        logit += wbar[k]
    for (k, m), g in zip(PAIRS, truth["g"]):
        logit += g * (ubar[k] * ubar[m]).sum(1)
    logit += 0.8 * np.tanh(2.0 * wbar[0]) * centred[:, 0]
    prob = 1.0 / (1.0 + np.exp(-SCALE * logit))
    labels = (rng.random(rows_n) < prob).astype(np.int32)[:, None]
    return dense, sparse, labels, prob


def write_day(root: Path, day: int, dense: np.ndarray, sparse: list[np.ndarray], labels: np.ndarray) -> None:
    """One day in the reference's three files (the npz uncompressed, members 0.npy .. 25.npy)."""
    dense_p, sparse_p, labels_p = day_paths(root, day)
    np.save(dense_p, dense)
    np.savez(sparse_p, **{f"{k}": a for k, a in enumerate(sparse)})  # numpy names the members k.npy
    np.save(labels_p, labels)


def generate(root: Path, hp: dict, say: Callable[[str], None] = print) -> dict:
    """Write the planted click log of one size into ``root`` (atomically: a temporary folder, then renamed)."""
    rows = tuple(hp["table_rows"])
    multi_hot = tuple(hp["multi_hot"])
    seed = int(hp.get("synthetic_seed", 1234))
    truth = _truth(rows, seed)
    days = [*hp["train_days"], hp["eval_day"]]
    tmp = root.with_name(f".{root.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    info: dict = {"version": VERSION, "seed": seed, "rows_per_day": hp["rows_per_day"], "days": days}
    for d in days:
        say(f"generating the planted click log: day {d} ({hp['rows_per_day']} samples)")
        dense, sparse, labels, prob = generate_day(hp["rows_per_day"], rows, multi_hot, truth, seed * 1000 + d + 1)
        write_day(tmp, d, dense, sparse, labels)
        if d == hp["eval_day"]:
            np.save(tmp / f"day_{d}_click_probability.npy", prob)
            half = -(-len(prob) // 2)
            y = labels[:, 0]
            info["bayes_auc_val"] = auc_mod.auc(prob[:half], y[:half])
            info["bayes_auc_test"] = auc_mod.auc(prob[half:], y[half:])
            info["click_rate"] = float(y.mean())
    (tmp / "planted.json").write_text(json.dumps(info, indent=1))
    folders.replace_dir(tmp, root)  # an older set of mlbench's; never a folder it did not make
    return info


def ensure(root: Path, hp: dict, say: Callable[[str], None] = print) -> dict:
    """The planted data of one size under ``root``, generated when missing or from an older generator."""
    meta = root / "planted.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("version") == VERSION and info.get("seed") == int(hp.get("synthetic_seed", 1234)) \
                and info.get("rows_per_day") == hp["rows_per_day"]:
            return info
    return generate(root, hp, say)
