"""The BERT-large model files MLPerf publishes for SQuAD v1.1, recognised from the file (mlcommons/inference
``language/bert``: README's model table, ``onnxruntime_SUT.py``, ``pytorch_SUT.py``, ``bert_tf_to_pytorch.py``).

- ``model.onnx`` (F1 90.874): inputs ``input_ids``, ``input_mask``, ``segment_ids`` (int64 ``[N, 384]``),
  outputs ``output_start_logits``, ``output_end_logits`` (float32 ``[N, 384]``).
- ``bert_large_v1_1_fake_quant.onnx`` (int8, F1 90.067): inputs ``input_ids``, ``attention_mask``,
  ``token_type_ids``; the reference stacks its two outputs in the file's order (start, end).
- ``model.pytorch`` (F1 90.874): a state dict of transformers' ``BertForQuestionAnswering`` (pooler included,
  which the QA head does not use).

mlbench's features (tokenised as the reference's ``create_squad_data.py``: seq 384, query 64, stride 128) are fed
under the names the file has; its outputs are read as start and end logits (by name where the names say so,
else in the file's order, as the reference stacks them), so each sample's response is the reference's
``[384, 2]`` float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlbench.inference import modelfile

# mlbench's input names (transformers') -> the other names a published file may use for them
ALIASES = {"input_ids": ("input_ids",), "attention_mask": ("attention_mask", "input_mask"),
           "token_type_ids": ("token_type_ids", "segment_ids")}


@dataclass(frozen=True)
class Interface:
    """``feeds``: mlbench's input name -> the file's; ``outputs``: the file's (start, end) output names."""

    name: str
    feeds: dict[str, str] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    found: str = ""

    def info(self) -> dict:
        return {"interface": self.name, "inputs": dict(self.feeds) or None, "outputs": list(self.outputs) or None,
                "pre_processing": "SQuAD v1.1 features as the reference's create_squad_data.py (WordPiece, "
                                  "seq 384, query 64, stride 128)", **({"found": self.found} if self.found else {})}


PYTORCH = Interface("transformers BertForQuestionAnswering (a state dict such as MLPerf's model.pytorch)")


def recognise_onnx(sig: modelfile.OnnxSignature, what: str, seq_len: int) -> Interface:
    """The interface of an ONNX file for BERT SQuAD, or the ConfigError naming what was found and expected."""
    expected = (f"three int64 [N,{seq_len}] inputs named input_ids, input_mask or attention_mask, segment_ids or "
                f"token_type_ids, and two float32 [N,{seq_len}] outputs (start and end logits: "
                "output_start_logits/output_end_logits in MLPerf's model.onnx)")
    by_name = {t.name: t for t in sig.inputs}
    feeds = {}
    for ours, names in ALIASES.items():
        found = [n for n in names if n in by_name]
        if len(found) != 1:
            raise modelfile.unrecognised(sig, what, expected)
        t = by_name[found[0]]
        if not t.dtype.startswith("int") or t.rank != 2 or (isinstance(t.shape[1], int) and t.shape[1] != seq_len):
            raise modelfile.unrecognised(sig, what, expected)
        feeds[ours] = found[0]
    if len(sig.inputs) != 3:
        raise modelfile.unrecognised(sig, what, expected)
    outs = [o for o in sig.outputs if o.dtype == "float32" and o.rank == 2
            and (not isinstance(o.shape[1], int) or o.shape[1] == seq_len)]
    if len(outs) != 2 or len(sig.outputs) != 2:
        raise modelfile.unrecognised(sig, what, expected)
    start = next((o.name for o in outs if "start" in o.name.lower()), None)
    end = next((o.name for o in outs if "end" in o.name.lower()), None)
    order = (start, end) if start and end and start != end else (outs[0].name, outs[1].name)
    official = feeds == {"input_ids": "input_ids", "attention_mask": "input_mask", "token_type_ids": "segment_ids"}
    name = ("MLPerf BERT-large model.onnx interface" if official else
            "BERT QA ONNX (transformers' input names, as MLPerf's int8 file and mlbench's export)")
    return Interface(f"{name}: inputs {', '.join(feeds.values())}; start/end logits {order[0]}, {order[1]}",
                     feeds, order, sig.describe())
