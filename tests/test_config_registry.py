import pytest

from mlbench import config, registry
from mlbench.config import TrainConfig
from mlbench.errors import ConfigError, UnknownNameError


def test_unknown_benchmark_did_you_mean():
    with pytest.raises(UnknownNameError) as exc:
        registry.get("resnet5")
    assert "did you mean 'resnet50'" in str(exc.value)
    assert "resnet50" in str(exc.value) and "known:" in str(exc.value)
    assert exc.value.exit_code == 2


def test_unknown_size():
    with pytest.raises(UnknownNameError, match="unknown size for resnet50 'huge'"):
        registry.get("resnet50", "huge")


def test_registry_is_lazy():
    handle = registry.get("resnet50", "mini")
    assert handle.definition.target == 0.90
    assert handle.definition.division == "open"
    ref = registry.get("resnet50", "reference").definition
    assert ref.target == 0.7590 and ref.eval_every_epochs == 4 and ref.runs_required == 5
    assert ref.ruleset == "4.0.0" and ref.division == "closed"


def test_sizes_derive_from_reference():
    sizes = registry.sizes("resnet50")
    assert set(sizes) == {"reference", "mini", "tiny"}
    # mini overrides only what differs; the recipe keys it does not touch come from the reference
    assert sizes["mini"].hparams["end_lr"] == sizes["reference"].hparams["end_lr"]
    assert sizes["mini"].mlperf_name == "resnet"


def test_config_layers_and_types():
    cfg = config.build(TrainConfig, {"batch_size": 32}, {"batch_size": "64", "compile": "true"}, {"epochs": 3})
    assert cfg.batch_size == 64 and cfg.compile is True and cfg.epochs == 3


@pytest.mark.parametrize("layer, field, fix", [
    ({"precision": "fp64"}, "precision", "allowed: fp32, bf16, fp16"),
    ({"batch_size": 0}, "batch_size", "must be >= 1"),
    ({"batch_size": "many"}, "batch_size", "per-process batch size"),
    ({"size": "huge"}, "size", "allowed: reference, mini, tiny"),
])
def test_invalid_values_name_the_field(layer, field, fix):
    with pytest.raises(ConfigError) as exc:
        config.build(TrainConfig, layer)
    assert f"'{field}'" in str(exc.value) and fix in str(exc.value)
    assert exc.value.exit_code == 2


def test_unknown_option_did_you_mean():
    with pytest.raises(UnknownNameError, match="did you mean 'batch_size'"):
        config.build(TrainConfig, {"batch_sise": 3})


def test_config_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("size: tiny\nepochs: 2\n")
    cfg = config.build(TrainConfig, config.load_file(f))
    assert cfg.size == "tiny" and cfg.epochs == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: [tiny\n")
    with pytest.raises(ConfigError, match="cannot parse config file"):
        config.load_file(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        config.load_file(tmp_path / "missing.yaml")


def test_set_syntax():
    assert config.parse_sets(["a=1", "b = x"]) == {"a": "1", "b": "x"}
    with pytest.raises(ConfigError, match="key=value"):
        config.parse_sets(["nokey"])
