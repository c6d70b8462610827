"""Issue 32: any JSON a user hands in for data (RNN-T manifests, COCO files, SQuAD files) fails with one line when it
is malformed, nested absurdly deep or of the wrong shape: never a traceback (RecursionError, a 5,000-digit integer,
a NaN literal). One loader does it for all: :func:`mlbench.untrusted.load_json`."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from catalogue import Case, check

from mlbench import untrusted
from mlbench.errors import ConfigError, DataError

DEEP = "[" * 100_000 + "]" * 100_000


def _rnnt(text: str, split: str = "train"):
    def setup(tmp: Path) -> None:
        from mlbench.benchmarks.rnnt import synthetic as synth

        root = synth.generate(tmp / "rn", "tones", 4, 2, seed=0, say=lambda m: None)
        (root / f"librispeech-{split}-wav.json").write_text(text)
    return setup


def _squad(text: str):
    def setup(tmp: Path) -> None:
        (tmp / "sq").mkdir()
        (tmp / "sq" / "dev-v1.1.json").write_text(text)
        (tmp / "sq" / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n")
    return setup


def _coco(text: str):
    def setup(tmp: Path) -> None:
        from mlbench.detection import synthetic as generate

        root = tmp / "mr"
        for split, n, seed in (("train", 2, 1), ("validation", 2, 2)):
            generate.write_split(root, split, n, 96, seed=seed, labels_file="shapes.json", masks=True)
        shutil.rmtree(root / "validation")  # never reached: the train json fails first
        (root / "train" / "labels" / "shapes.json").write_text(text)
    return setup


RNNT = ("train", "rnnt", "--size", "tiny", "--data-dir", "{tmp}/rn", "--device", "cpu", "--output-dir", "{tmp}/runs")
SQUAD = ("infer", "bert", "--size", "reference", "--data-dir", "{tmp}/sq", "--weights", "random", "--mode",
         "accuracy", "--output-dir", "{tmp}/runs")
MASKRCNN = ("train", "maskrcnn", "--size", "tiny", "--data-dir", "{tmp}/mr", "--device", "cpu", "--output-dir",
            "{tmp}/runs")

CASES = [
    Case("rnnt-manifest-nested-100000-deep", RNNT, 1, "nests 100000 levels deep", setup=_rnnt(DEEP)),
    Case("rnnt-manifest-an-object", RNNT, 1, "holds a json object, not a json list", setup=_rnnt('{"a": []}')),
    Case("rnnt-manifest-huge-integer", RNNT, 1, "an integer of more than 4,300 digits",
         setup=_rnnt("[" + "9" * 5000 + "]", split="dev")),
    Case("squad-nested-100000-deep", SQUAD, 1, "nests 100000 levels deep", setup=_squad(DEEP)),
    Case("coco-nested-100000-deep", MASKRCNN, 1, "nests 100001 levels deep", setup=_coco('{"images": ' + DEEP + "}")),
    Case("coco-nan-literal", MASKRCNN, 1, "holds NaN, which JSON does not allow", setup=_coco('{"images": [NaN]}')),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_json_is_one_line(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


@pytest.mark.parametrize("raw,message", [
    (DEEP.encode(), "nests 100000 levels deep, more than the 64"),
    (b"[" * 65 + b"]" * 65, "nests 65 levels deep"),
    (b'{"a": [1,', "is not valid JSON (line 1 column 10"),
    (b"\xff\xfe\x00garbage", "is not UTF-8 text"),
    (b"[Infinity]", "holds Infinity, which JSON does not allow"),
    (b"[-Infinity]", "holds -Infinity"),
    (b"[" + b"1" * 4400 + b"]", "an integer of more than 4,300 digits"),
    (b'"just text"', "holds a JSON string, not a JSON list"),
    (b"null", "holds a JSON null, not a JSON list"),
    (b"", "is not valid JSON"),
])
def test_load_json_refuses_in_one_line(tmp_path, raw, message):
    path = tmp_path / "m.json"
    path.write_bytes(raw)
    with pytest.raises(DataError) as err:
        untrusted.load_json(path, "manifest", expect=list, hint="re-create it")
    assert message in err.value.message and str(path) in err.value.message and err.value.hint == "re-create it"
    assert "\n" not in err.value.message


def test_load_json_reads_what_is_fine_and_names_missing_files(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text('\ufeff{"a": "[[[[\\"]]", "b": [1.5, -2, true, null], "c": "\\\\"}')  # a BOM, brackets in text
    assert untrusted.load_json(path, "file", hint="-") == {"a": '[[[["]]', "b": [1.5, -2, True, None], "c": "\\"}
    with pytest.raises(DataError, match="file not found: "):
        untrusted.load_json(tmp_path / "none.json", "file", hint="-")
    with pytest.raises(DataError, match="is a folder, not a file"):
        untrusted.load_json(tmp_path, "file", hint="-")
    with pytest.raises(ConfigError):  # the caller picks the error class (exit 2 for options)
        untrusted.load_json(tmp_path / "none.json", "system description", hint="-", error=ConfigError)
    (tmp_path / "nan.json").write_text('{"loss": NaN}')
    assert untrusted.load_json(tmp_path / "nan.json", "result", hint="-", allow_nan=True)["loss"] != 0


def test_depth_counts_what_json_nests():
    rng = random.Random(0)

    def value(d: int):
        if d == 0 or rng.random() < 0.3:
            return rng.choice([1, "a[b{", 'q"]}', "\\", "\\\"[", None, 2.5])
        return [value(d - 1) for _ in range(rng.randint(0, 3))] if rng.random() < 0.5 else \
            {f"k{i}[": value(d - 1) for i in range(rng.randint(0, 3))}

    def nesting(v) -> int:
        kids = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        return 0 if kids is None else 1 + max((nesting(k) for k in kids), default=0)

    for _ in range(300):
        v = value(rng.randint(0, 8))
        assert untrusted.depth(json.dumps(v).encode()) == nesting(v)


@pytest.mark.parametrize("name,message", [
    ("/etc/passwd", "is an absolute path"), ("../x.wav", "climbs out of"), ("a/../../x.wav", "climbs out of"),
    ("C:\\x.wav", "is an absolute path"), ("\\\\server\\x.wav", "is an absolute path"), ("..\\x.wav", "climbs out of"),
    ("a\x00.wav", "holds a control character"), ("", "is not a file name"), (["a.wav"], "is not a file name"),
])
def test_inside_keeps_names_in_their_folder(name, message):
    with pytest.raises(DataError, match=message):
        untrusted.inside("/data", name, "entry 3", what="fname")
    assert untrusted.inside("/data", "dev/a..b.wav", "entry 3") == Path("/data/dev/a..b.wav")
