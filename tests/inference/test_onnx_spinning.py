"""ONNX Runtime's intra-op threads spin between runs by default; mlbench turns that off for Offline on a CPU
with several threads (the harness's own threads need those cores) and records the choice in result.json."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mlbench.inference.backends.onnxrt import OnnxRuntimeBackend
from mlbench.inference.config import InferConfig


def _identity(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("scenario,threads,device,spins", [
    ("Offline", 2, "cpu", False), ("Offline", 1, "cpu", True), ("SingleStream", 2, "cpu", True),
    ("Server", 2, "cpu", True), ("Offline", 2, "cuda", True)])
def test_spinning_choice_reaches_the_session_and_the_record(tmp_path, monkeypatch, scenario, threads, device, spins):
    import onnxruntime as ort

    made, real = [], ort.InferenceSession

    def session(path, so, **kw):  # the options as mlbench set them (a session does not hand its entries back)
        made.append(so)
        return real(path, so, **kw)

    monkeypatch.setattr(ort, "InferenceSession", session)
    b = OnnxRuntimeBackend(InferConfig(benchmark="resnet50", size="tiny", backend="onnxruntime", scenario=scenario,
                                       device=device), threads)
    assert b.spinning is spins
    if device != "cpu":
        return  # no CUDA provider here; the choice is the property's
    session = b._session(_identity(tmp_path / "m.onnx"))
    key = "session.intra_op.allow_spinning"
    if spins:  # ORT's default: no entry
        with pytest.raises(RuntimeError):
            made[0].get_session_config_entry(key)
    else:
        assert made[0].get_session_config_entry(key) == "0"
    b.session, b.path, b.check, b.input_names = session, tmp_path / "m.onnx", {"ok": True}, ["x"]
    assert b.info()["intra_op_spinning"] is spins
    assert np.array_equal(b.predict(np.ones((2, 4), np.float32))[0], np.ones((2, 4), np.float32))
