"""Model files as users bring them: an ONNX file's interface read from the file, and its FLOPs per sample.

MLPerf publishes each inference model as files (ONNX, PyTorch) whose interfaces differ: input names and
layout, output names and order, class offsets. A benchmark's task recognises the interface from what
:func:`signature` reads (names, element types, shapes, opset, producer) and refuses one it does not know with
:func:`unrecognised`, which names what was found and what was expected, before any sample is pre-processed.

:func:`count_flops` counts the FLOPs of one sample from the graph itself, with ONNX's shape inference at batch
1: convolutions, matrix products (Gemm, MatMul, batched), their quantized forms and recurrent layers, a
multiply-add counted as 2, as torch's FLOP counter counts the PyTorch models (which also leaves out element-wise
work), so that throughput-per-peak figures exist for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

from mlbench.errors import ConfigError, DataError

Dim = int | str | None  # a fixed size, a symbolic one ("batch", "unk__123") or unknown


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a graph: its name, element type (numpy's name) and shape."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    def text(self) -> str:
        dims = ",".join("?" if d is None else str(d) if isinstance(d, int) else "N" for d in self.shape)
        return f"{self.name} {self.dtype} [{dims}]"


@dataclass(frozen=True)
class OnnxSignature:
    """What an ONNX file offers: graph inputs (initializers excluded), outputs, opset and producer."""

    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int | None
    producer: str

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)

    def describe(self) -> str:
        made = f", {self.producer}" if self.producer else ""
        return (f"inputs {', '.join(t.text() for t in self.inputs) or 'none'}; outputs "
                f"{', '.join(t.text() for t in self.outputs) or 'none'} (opset {self.opset}{made})")


def _dtype_name(elem_type: int) -> str:
    import onnx

    try:
        import numpy as np

        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        return f"onnx type {elem_type}"


def _spec(value: Any) -> TensorSpec:
    t = value.type.tensor_type
    dims: list[Dim] = []
    if t.HasField("shape"):
        for d in t.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return TensorSpec(value.name, _dtype_name(t.elem_type), tuple(dims))


def load(path: str | Path) -> Any:
    """The ONNX model at ``path`` (weights kept in external files are not read); DataError when it is not one."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ONNX model not found: {p}", "pass an existing .onnx file to --weights")
    try:
        return onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError, onnx others
        raise ConfigError(f"{p} is not a readable ONNX model: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}",
                          "pass an ONNX file (for example one that MLCommons publishes, see README: "
                          "official model files)") from exc


def signature(path: str | Path, model: Any = None) -> OnnxSignature:
    """The interface of the ONNX file at ``path`` (``model``: the file already loaded)."""
    model = model if model is not None else load(path)
    g = model.graph
    weights = {i.name for i in g.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    producer = " ".join(x for x in (model.producer_name, model.producer_version) if x)
    return OnnxSignature(Path(path), tuple(_spec(v) for v in g.input if v.name not in weights),
                         tuple(_spec(v) for v in g.output), opset, producer)


def unrecognised(sig: OnnxSignature, what: str, expected: str, fix: str | None = None) -> ConfigError:
    """The error for an ONNX file whose interface no known ``what`` model has (exit code 2, before any test)."""
    return ConfigError(f"{sig.path}: not an interface mlbench knows for {what}: found {sig.describe()}; "
                       f"expected {expected}",
                       fix or "pass one of the official model files (README: official model files) or an "
                       ".onnx that mlbench exported")


# ---------------------------------------------------------------------------------------------------- FLOPs
def _fixed_inputs(model: Any, sample_shapes: dict[str, tuple[int, ...]] | None) -> None:
    """Give every graph input a concrete shape: batch 1 and the sample's shape (symbolic dims otherwise 1)."""
    weights = {i.name for i in model.graph.initializer}
    for v in model.graph.input:
        if v.name in weights:
            continue
        dims = v.type.tensor_type.shape.dim
        want = (sample_shapes or {}).get(v.name)
        for k, d in enumerate(dims):
            if k == 0:
                d.ClearField("dim_param")
                d.dim_value = 1
            elif want is not None and k - 1 < len(want):
                d.ClearField("dim_param")
                d.dim_value = int(want[k - 1])
            elif not d.HasField("dim_value"):
                d.ClearField("dim_param")
                d.dim_value = 1


def count_flops(path: str | Path, sample_shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """FLOPs of one sample through the ONNX file at ``path``: ``{"flops_per_sample", "by_op", "uncounted",
    "method"}``. ``sample_shapes`` gives each input's shape without the batch dimension (needed where the file
    leaves sizes open, as a sequence length); ``uncounted`` lists the compute nodes whose shapes stayed unknown
    (their FLOPs are missing from the total)."""
    import onnx

    model = load(path)
    _fixed_inputs(model, sample_shapes)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - a graph shape inference cannot follow: count nothing
        raise DataError(f"ONNX shape inference failed on {path}: {exc}", "the FLOPs cannot be counted") from exc
    g = model.graph
    shapes: dict[str, tuple[int, ...] | None] = {}
    for v in list(g.input) + list(g.value_info) + list(g.output):
        dims = v.type.tensor_type.shape.dim
        known = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        shapes[v.name] = None if (not v.type.tensor_type.HasField("shape") or None in known) else tuple(known)
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
    compute = [n for n in g.node if n.op_type in _COUNTERS]
    method = ("ONNX graph at batch 1, shapes from onnx shape inference: Conv, Gemm, MatMul (and their quantized "
              "forms), LSTM/GRU/RNN, a multiply-add counted as 2")
    unknown = [n for n in compute if _COUNTERS[n.op_type](n, shapes) is None]
    if unknown:  # shapes computed from the data (e.g. a sequence length read at run time): run it once
        shapes.update(_run_shapes(path, model, unknown, sample_shapes))
        method += "; where it cannot follow them, from one run of the graph at batch 1 (ONNX Runtime)"
    by_op: dict[str, float] = {}
    uncounted: list[str] = []
    for node in compute:
        f = _COUNTERS[node.op_type](node, shapes)
        if f is None:
            uncounted.append(node.name or node.op_type)
            continue
        by_op[node.op_type] = by_op.get(node.op_type, 0.0) + f
    return {"flops_per_sample": sum(by_op.values()), "by_op": by_op, "uncounted": uncounted, "method": method}


def _run_shapes(path: str | Path, model: Any, nodes: list, sample_shapes: dict | None) -> dict[str, tuple]:
    """The shapes of ``nodes``' inputs and outputs from running the graph once on zeros at batch 1 (the values
    exposed as extra outputs); {} when it cannot run (weights in external files, an input it cannot fill)."""
    import numpy as np
    import onnx

    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    if any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer):
        return {}
    known = {o.name for o in model.graph.output}
    names = [n for node in nodes for n in (*node.input, *node.output) if n and n not in known]
    full = onnx.ModelProto()
    full.CopyFrom(model)
    del full.graph.value_info[:]
    weights = {i.name for i in full.graph.initializer}
    for name in dict.fromkeys(names):
        if name not in weights:
            full.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    feed = {}
    for v in full.graph.input:
        if v.name in weights:
            continue
        dims = [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
        feed[v.name] = np.zeros(dims, dtype=onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))
    try:
        sess = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"])
        outs = sess.run(None, feed)
    except Exception:  # noqa: BLE001 - the fallback is best effort; the count says what stayed unknown
        return {}
    got = {o.name: tuple(a.shape) for o, a in zip(sess.get_outputs(), outs)}
    got.update({i.name: tuple(i.dims) for i in full.graph.initializer})
    return got


def flops_per_sample(path: str | Path, sample_shapes: dict[str, tuple[int, ...]] | None = None) -> float | None:
    """FLOPs of one sample through an ONNX file (see :func:`count_flops`), or None when they cannot be counted."""
    try:
        n = count_flops(path, sample_shapes)["flops_per_sample"]
    except Exception:  # noqa: BLE001 - FLOPs are informative; never fail a run for them
        return None
    return n or None


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _conv(node: Any, shapes: dict, x: int = 0, w: int = 1) -> float | None:
    ws, ys = shapes.get(node.input[w]), shapes.get(node.output[0])
    if ws is None or ys is None:
        return None
    # output elements x (input channels per group x kernel elements) multiply-adds
    return 2.0 * prod(ys) * prod(ws[1:])


def _conv_transpose(node: Any, shapes: dict) -> float | None:
    xs, ws = shapes.get(node.input[0]), shapes.get(node.input[1])
    if xs is None or ws is None:
        return None
    # every input element is spread over the kernel for each output channel of its group
    return 2.0 * prod(xs) * prod(ws[1:])


def _matmul(node: Any, shapes: dict, a: int = 0, b: int = 1) -> float | None:
    sa, sb, sy = shapes.get(node.input[a]), shapes.get(node.input[b]), shapes.get(node.output[0])
    if sa is None or sb is None or sy is None or not sa:
        return None
    k = sa[-1]
    return 2.0 * prod(sy) * k


def _gemm(node: Any, shapes: dict) -> float | None:
    sa, sy = shapes.get(node.input[0]), shapes.get(node.output[0])
    if sa is None or sy is None or len(sa) != 2:
        return None
    k = sa[0] if _attr(node, "transA", 0) else sa[1]
    return 2.0 * prod(sy) * k


def _recurrent(gates: int):
    def count(node: Any, shapes: dict) -> float | None:
        xs, ws, rs = shapes.get(node.input[0]), shapes.get(node.input[1]), shapes.get(node.input[2])
        if xs is None or ws is None or rs is None:
            return None
        seq, batch = xs[0], xs[1]
        directions, hidden = ws[0], rs[2]
        return 2.0 * seq * batch * directions * gates * hidden * (ws[2] + hidden)
    return count


_COUNTERS = {
    "Conv": _conv,
    "ConvInteger": _conv,
    "QLinearConv": lambda n, s: _conv(n, s, x=0, w=3),
    "ConvTranspose": _conv_transpose,
    "MatMul": _matmul,
    "MatMulInteger": _matmul,
    "QLinearMatMul": lambda n, s: _matmul(n, s, a=0, b=3),
    "Gemm": _gemm,
    "LSTM": _recurrent(4),
    "GRU": _recurrent(3),
    "RNN": _recurrent(1),
}


# ------------------------------------------------------------------------------------- pickled whole modules
class _Inert:
    """Stands in for every class a pickled module names: it records what the pickle sets on it and runs none of
    that class's code (no ``__setstate__``, ``__init__`` or ``__reduce__`` of the file's classes)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_inert_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict, slots)
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_inert_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:  # a pickled dict subclass
        self.__dict__.setdefault("_inert_items", {})[key] = value

    def append(self, value: Any) -> None:  # a pickled list subclass
        self.__dict__.setdefault("_inert_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("_inert_list", []).extend(values)

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:  # a pickled function, called by the pickle
        return _Inert()


def _safe_globals() -> dict[str, Any]:
    """What torch's ``weights_only`` loading allows (tensor rebuilding, dtypes, OrderedDict, ...)."""
    try:
        from torch import _weights_only_unpickler

        return dict(_weights_only_unpickler._get_allowed_globals())
    except (ImportError, AttributeError):  # another torch: the few a module's tensors need
        import collections

        import torch

        return {"collections.OrderedDict": collections.OrderedDict, "torch.Size": torch.Size,
                "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
                "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
                **{f"torch.{n}": getattr(torch, n) for n in ("float32", "float16", "bfloat16", "float64", "int64",
                                                              "int32", "int8", "uint8", "bool")}}


class _InertPickle:
    """A ``pickle_module`` for ``torch.load`` that resolves only torch's safe globals and stands every other
    class or function in with an :class:`_Inert`."""

    import pickle as _pickle

    load = _pickle.load

    class Unpickler(_pickle.Unpickler):
        _safe: dict[str, Any] = {}
        _made: dict[str, type] = {}

        def find_class(self, module: str, name: str) -> Any:
            import _compat_pickle  # protocol 2 pickles name Python 2's modules (__builtin__.set)

            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            key = f"{module}.{name}"
            if key in self._safe:
                return self._safe[key]
            if key == "copyreg._reconstructor":
                return lambda cls, base, state: cls.__new__(cls) if isinstance(cls, type) else _Inert()
            if key not in self._made:
                self._made[key] = type(name, (_Inert,), {"_inert_name": key})
            return self._made[key]


def read_inert(path: str | Path) -> Any:
    """What a PyTorch file holds, unpickled with every class and function it names (beyond torch's tensor
    rebuilding and plain containers) stood in for by an inert record: tensors come back as tensors, and no code
    of the file runs. DataError when it cannot be read at all."""
    import warnings

    import torch

    _InertPickle.Unpickler._safe = _safe_globals()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=_InertPickle)
    except Exception as exc:  # noqa: BLE001 - a corrupt file makes torch/pickle raise many types
        raise DataError(f"cannot read {path} as a PyTorch file: {' '.join(str(exc).split())[:200]}",
                        "pass a state dict or the published model file") from exc


def read_pickled_module(path: str | Path) -> dict[str, Any]:
    """The state dict (parameters and persistent buffers, by their dotted names) of a whole ``nn.Module`` that
    was saved with ``torch.save(model)``, as some published model files are (e.g. MLPerf's RetinaNet .pth),
    read without running any code of the classes it names (:func:`read_inert`). A file holding a module under a
    dict key (``model``) works too. DataError when the file holds no module."""
    obj = read_inert(path)
    if isinstance(obj, dict):
        obj = next((v for v in obj.values() if isinstance(v, _Inert) and "_modules" in v.__dict__), obj)
    if not isinstance(obj, _Inert) or "_modules" not in obj.__dict__:
        raise DataError(f"{path} holds no PyTorch module ({type(obj).__name__})",
                        "pass a state dict or the published model file")
    state: dict[str, Any] = {}
    _collect(obj, "", state)
    return state


def _collect(module: _Inert, prefix: str, out: dict[str, Any]) -> None:
    import torch

    d = module.__dict__
    skip = set(d.get("_non_persistent_buffers_set") or ())
    for kind in ("_parameters", "_buffers"):
        for name, t in (d.get(kind) or {}).items():
            if isinstance(t, torch.Tensor) and not (kind == "_buffers" and name in skip):
                out[prefix + name] = t.detach()
    for name, child in (d.get("_modules") or {}).items():
        if isinstance(child, _Inert):
            _collect(child, f"{prefix}{name}.", out)
