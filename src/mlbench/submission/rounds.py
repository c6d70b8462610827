"""MLPerf Inference rounds as their official submission checker enforces them, for the benchmarks mlbench packages.

The facts below are read from mlcommons/inference ``tools/submission/submission_checker/constants.py``
(``MODEL_CONFIG`` per round, ``OFFLINE_MIN_SPQ_SINCE_V4``, the ``*_PATH`` layouts) and the rules document. A
round is identified by the RNG seeds LoadGen's embedded mlperf.conf carries: each round publishes new ones and
the checker refuses a log made with another round's. ``loadgen_round()`` tells which round the installed
LoadGen belongs to; ``round_of_seeds()`` which round a run's detail log was made for.

Layouts: up to v5.1 the measurements (``measurements/<system>/<bench>/<scenario>/<system>_<scenario>.json``,
user.conf, README.md) and the compliance tests (``compliance/<system>/<bench>/<scenario>/TEST01``) sit beside
``results/``, and the code in ``code/``; from v6.0 everything of one scenario is in its results folder
(``measurements.json``, ``TEST01/``) and the code in ``src/``.
"""

from __future__ import annotations

from dataclasses import dataclass

SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline", "Interactive")  # Interactive: LLMs (LoadGen's Server)
SYSTEM_TYPES = ("datacenter", "edge", "datacenter,edge", "edge,datacenter")


@dataclass(frozen=True)
class Rules:
    """One benchmark folder (``resnet``, ``bert-99``, ...) in one round."""

    accuracy: tuple[str, float]  # (the checker's pattern name, the target in its unit: percent for acc/mAP/AUC/F1)
    performance_sample_count: int  # the least LoadGen may hold for performance mode
    dataset_size: int  # the accuracy run must cover exactly this many samples
    required: dict[str, tuple[str, ...]]  # system_type -> scenarios a closed submission must have
    tests: tuple[str, ...]  # compliance tests (closed division)
    offline_min_samples_per_query: int  # closed Offline
    server_latency_ns: int | None = None  # Server: the early-stopping latency bound


def _resnet(datacenter: tuple[str, ...] | None) -> Rules:
    req = {"edge": ("SingleStream", "MultiStream", "Offline"),
           "datacenter,edge": ("SingleStream", "MultiStream", "Offline", "Server")}
    if datacenter:
        req["datacenter"] = datacenter
    return Rules(("acc", 76.46 * 0.99), 1024, 50_000, req, ("TEST01", "TEST04"), 24_576, 15_000_000)


def _retinanet(all_types: bool) -> Rules:
    req = {"datacenter,edge": ("SingleStream", "Offline", "MultiStream", "Server")}
    if all_types:
        req.update({"datacenter": ("Server", "Offline"), "edge": ("SingleStream", "MultiStream", "Offline")})
    return Rules(("mAP", 37.55 * 0.99), 64, 24_781, req, ("TEST01",), 24_576, 100_000_000)


def _bert(share: float) -> Rules:
    both = ("SingleStream", "Offline")
    return Rules(("F1", 90.874 * share), 10_833, 10_833, {"edge": both, "datacenter,edge": both}, ("TEST01",),
                 10_833)


def _dlrm(share: float) -> Rules:
    return Rules(("AUC", 80.31 * share), 204_800, 330_067,
                 {"datacenter": ("Server", "Offline"), "datacenter,edge": ("Offline", "Server")}, ("TEST01",),
                 24_576, 60_000_000)


def _llama31_8b() -> Rules:
    """llama3.1-8b (datacenter; since v5.1): the checker's ROUGE1 pattern and 99% target (it also checks ROUGE2, L,
    Lsum and GEN_LEN, which accuracy.txt carries); 13,368 samples; Offline required, Server and Interactive optional;
    its compliance test (TEST06) is not run by mlbench."""
    return Rules(("ROUGE1", 38.7792 * 0.99), 13_368, 13_368, {"datacenter": ("Offline",)}, (), 13_368,
                 20_000_000_000)


# whisper (since v5.1): word accuracy 99% of the reference's (100 - 2.0671), 1,633 clips, Offline required in every
# system type, TEST01
_WHISPER = Rules(("ACCURACY", (100.0 - 2.0671) * 0.99), 1633, 1633,
                 {t: ("Offline",) for t in ("datacenter", "edge", "datacenter,edge")}, ("TEST01",), 1633)


@dataclass(frozen=True)
class Round:
    name: str  # "v6.1"
    seeds: tuple[int, int, int]  # qsl_rng_seed, sample_index_rng_seed, schedule_rng_seed
    layout: str  # "v5" (measurements/ and compliance/ beside results/, code/) or "v6" (in results/, src/)
    benchmarks: dict[str, Rules]

    @property
    def code_dir(self) -> str:
        return "code" if self.layout == "v5" else "src"


_BERT = {"bert-99": _bert(0.99), "bert-99.9": _bert(0.999)}
_DLRM = {"dlrm-v2-99": _dlrm(0.99), "dlrm-v2-99.9": _dlrm(0.999)}
ROUNDS: dict[str, Round] = {r.name: r for r in (
    Round("v5.0", (6023615788873153749, 15036839855038426416, 9933818062894767841), "v5",
          {"resnet": _resnet(("Server", "Offline")), "retinanet": _retinanet(True), **_BERT, **_DLRM}),
    Round("v5.1", (1780908523862526354, 14771362308971278857, 18209322760996052031), "v5",
          {"resnet": _resnet(None), "retinanet": _retinanet(True), **_BERT, **_DLRM,
           "llama3.1-8b": _llama31_8b(), "whisper": _WHISPER}),
    Round("v6.0", (2465351861681999779, 14276810075590677512, 3936089224930324775), "v6",
          {"resnet": _resnet(None), "retinanet": _retinanet(False), **_BERT, "llama3.1-8b": _llama31_8b(),
           "whisper": _WHISPER}),
    Round("v6.1", (2085463073848966840, 2747215439041700203, 16159082839903944936), "v6",
          {"resnet": _resnet(None), **_BERT, "llama3.1-8b": _llama31_8b(), "whisper": _WHISPER}),
)}


def round_of_seeds(seeds: tuple[int, int, int]) -> Round | None:
    return next((r for r in ROUNDS.values() if r.seeds == tuple(seeds)), None)


def loadgen_seeds() -> tuple[int, int, int]:
    """The seeds the installed LoadGen's embedded mlperf.conf sets (read through TestSettings.FromConfig)."""
    import tempfile

    import mlperf_loadgen as lg

    from mlbench import registry

    # LoadGen reads mlperf.conf only for a model it knows; the seeds are the same for every model (*.*)
    model = next(b.loadgen_model_name for n in registry.names(hidden=True) for b in registry.sizes(n).values()
                 if b.loadgen_model_name)
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:  # an empty user.conf: mlperf.conf alone
        s = lg.TestSettings()
        s.FromConfig(f.name, model, "Offline")
    return int(s.qsl_rng_seed), int(s.sample_index_rng_seed), int(s.schedule_rng_seed)


def loadgen_round() -> Round | None:
    """The round whose seeds the installed LoadGen carries (None: a round mlbench does not know)."""
    return round_of_seeds(loadgen_seeds())


def rounds_with(folder: str) -> list[str]:
    return [name for name, r in ROUNDS.items() if folder in r.benchmarks]
