"""The system description of a submission: ``systems/<system>.json``.

What the machine is comes from the ``system.json`` that every run recorded when it ran (``mlbench sysinfo``);
what only the submitter can say (availability status, cooling, storage, interconnects, ...) comes from
``--system-json``. Fields the user gives win over recorded ones. The file is written with sorted keys and a
fixed layout, so packaging the same runs with the same user fields gives the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlbench.errors import ConfigError

# The fields mlperf-logging's system_desc_checker requires (mlperf_logging/system_desc_checker/
# system_desc_checker.py, ``required_fields``), in its order.
TRAINING_REQUIRED = (
    "submitter", "division", "status", "system_name", "number_of_nodes", "host_processors_per_node",
    "host_processor_model_name", "host_processor_core_count", "host_processor_vcpu_count",
    "host_processor_frequency", "host_processor_caches", "host_processor_interconnect", "host_memory_capacity",
    "host_storage_type", "host_storage_capacity", "host_networking", "host_networking_topology",
    "host_memory_configuration", "accelerators_per_node", "accelerator_model_name",
    "accelerator_host_interconnect", "accelerator_frequency", "accelerator_on-chip_memories",
    "accelerator_memory_configuration", "accelerator_memory_capacity", "accelerator_interconnect",
    "accelerator_interconnect_topology", "cooling", "hw_notes", "framework", "other_software_stack",
    "operating_system", "sw_notes",
)
# The training checker accepts these availability values (ruleset 4.0.0 and later).
TRAINING_STATUS = ("Available on-premise", "Available cloud", "Research, Development, or Internal (RDI)", "Preview")

# MLPerf Inference's submission checker (mlcommons/inference tools/submission/submission_checker/constants.py,
# SYSTEM_DESC_REQUIRED_FIELDS): the fields it requires, and those it wants a non-empty answer for
# (SYSTEM_DESC_MEANINGFUL_RESPONSE_REQUIRED_FIELDS). Its status values are compared in lower case.
INFERENCE_REQUIRED = (
    "division", "submitter", "status", "system_name", "number_of_nodes", "host_processor_model_name",
    "host_processors_per_node", "host_processor_core_count", "host_memory_capacity", "host_storage_capacity",
    "host_storage_type", "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "framework", "operating_system", "system_type", "other_software_stack", "host_processor_frequency",
    "host_processor_caches", "host_memory_configuration", "host_processor_interconnect", "host_networking",
    "host_networking_topology", "accelerator_frequency", "accelerator_host_interconnect", "accelerator_interconnect",
    "accelerator_interconnect_topology", "accelerator_memory_configuration", "accelerator_on-chip_memories",
    "cooling", "hw_notes", "sw_notes", "host_network_card_count", "system_type_detail",
)
INFERENCE_MEANINGFUL = (
    "division", "submitter", "system_type", "status", "system_name", "number_of_nodes", "host_processor_model_name",
    "host_processors_per_node", "host_processor_core_count", "host_memory_capacity", "host_memory_configuration",
    "host_storage_capacity", "host_storage_type", "host_networking", "host_network_card_count",
    "host_networking_topology", "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "accelerator_host_interconnect", "accelerator_memory_configuration", "accelerator_interconnect", "cooling",
    "framework", "operating_system", "other_software_stack",
)
INFERENCE_STATUS = ("available", "preview", "rdi")
SYSTEM_TYPES = ("datacenter", "edge", "datacenter,edge", "edge,datacenter")
# Inference fields only the submitter can give, beyond the training ones.
INFERENCE_USER_FIELDS = ("system_type", "system_type_detail", "host_networking", "host_network_card_count")

# Fields that only the submitter knows: never guessed.
USER_FIELDS = (
    "status", "host_processor_frequency", "host_processor_caches", "host_processor_interconnect",
    "host_storage_type", "host_storage_capacity", "host_networking_topology", "host_memory_configuration",
    "accelerator_host_interconnect", "accelerator_frequency", "accelerator_on-chip_memories",
    "accelerator_memory_configuration", "accelerator_interconnect", "accelerator_interconnect_topology", "cooling",
)
# Free-text notes: empty unless the user writes some.
NOTES = ("hw_notes", "sw_notes")
ACCELERATOR_FIELDS = tuple(f for f in USER_FIELDS if f.startswith("accelerator_"))

# Recorded by mlbench sysinfo and copied as they are (everything else it records stays out: the fingerprint,
# probe errors, the python path are mlbench's, not MLPerf's).
RECORDED = (
    "number_of_nodes", "host_processors_per_node", "host_processor_model_name", "host_processor_core_count",
    "host_memory_capacity", "host_networking", "accelerators_per_node", "accelerator_model_name",
    "accelerator_memory_capacity", "framework", "operating_system",
)


def read_user_fields(path: str | Path | None) -> dict[str, Any]:
    """``--system-json``: one JSON object of text (or number) fields; one-line error otherwise (exit code 2)."""
    if not path:
        return {}
    from mlbench.submission.untrusted import BadInput, read_object

    hint = 'the file holds one JSON object of system fields, e.g. {"status": "available", "cooling": "air"}'
    try:
        data = read_object(Path(path), "--system-json")
    except BadInput as exc:
        raise ConfigError(f"invalid value for 'system_json': {exc.message}", hint) from None
    for key, value in data.items():
        if not isinstance(value, (str, int, float, bool)) or isinstance(value, float) and value != value:
            raise ConfigError(f"invalid value for 'system_json': {path}: field {key!r} is not text or a number",
                              hint)
        if len(key) > 200 or len(str(value)) > 10_000:
            raise ConfigError(f"invalid value for 'system_json': {path}: field {key[:40]!r} is too long", hint)
    return data


def software_stack(recorded: dict[str, Any]) -> str:
    stack = recorded.get("other_software_stack")
    if isinstance(stack, dict):
        text = ", ".join(f"{k} {v}" for k, v in stack.items())
    else:
        text = str(stack or "")
    mlbench_v = recorded.get("mlbench_version")
    if mlbench_v:
        commit = recorded.get("mlbench_commit")
        text = f"mlbench {mlbench_v}" + (f" (commit {commit})" if commit else "") + (f", {text}" if text else "")
    return text


def describe(recorded: dict[str, Any], user: dict[str, Any], *, submitter: str, system_name: str, division: str,
             usage: str = "training") -> dict[str, Any]:
    """The systems JSON: recorded fields, then derived ones, then the user's (which win)."""
    # an empty recorded value (host_networking, where mlbench sysinfo has nothing to say) is asked for where the
    # checker wants an answer (inference: see problems())
    desc: dict[str, Any] = {k: recorded[k] for k in RECORDED if k in recorded}
    desc["other_software_stack"] = software_stack(recorded)
    if "host_processor_core_count" in recorded:
        # mlbench sysinfo counts logical CPUs (os.cpu_count): that is the vCPU count.
        desc["host_processor_vcpu_count"] = recorded["host_processor_core_count"]
    if not recorded.get("accelerators_per_node"):
        # No accelerator: its fields say so instead of being left for the user.
        for f in ACCELERATOR_FIELDS + ("accelerator_model_name", "accelerator_memory_capacity"):
            desc[f] = "N/A"
    for f in NOTES:
        desc.setdefault(f, "")
    desc.update(user)
    desc.update({"submitter": submitter, "system_name": system_name, "division": division})
    # Every value is text, as in MLPerf's published systems JSON: the official checkers join some fields as
    # strings (system_desc_checker fails with a TypeError on a number) and call int() on the counts.
    return {k: v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else
            "" if v is None else str(v) for k, v in desc.items()}


def problems(desc: dict[str, Any], usage: str = "training") -> list[str]:
    """What is missing or invalid in ``desc``, in words (empty when it will pass the checker)."""
    required = TRAINING_REQUIRED if usage == "training" else INFERENCE_REQUIRED
    out = []
    missing = [f for f in required if f not in desc]
    if missing:
        out.append("missing field(s) only you can give: " + ", ".join(missing))
    if usage != "training":
        empty = [f for f in INFERENCE_MEANINGFUL if f in desc and not str(desc[f]).strip()]
        if empty:
            out.append("empty field(s) the checker wants an answer in (N/A where nothing applies): "
                       + ", ".join(empty))
    allowed = TRAINING_STATUS if usage == "training" else INFERENCE_STATUS
    status = desc.get("status")
    if "status" in desc and (status if usage == "training" else str(status).lower()) not in allowed:
        out.append(f"status {desc['status']!r} is not one MLPerf accepts: one of " + ", ".join(map(repr, allowed)))
    if usage != "training" and "system_type" in desc and desc["system_type"] not in SYSTEM_TYPES:
        out.append(f"system_type {desc['system_type']!r} must be one of " + ", ".join(map(repr, SYSTEM_TYPES[:3])))
    return out


def template(desc: dict[str, Any], usage: str = "training") -> dict[str, Any]:
    """A ``--system-json`` file to fill: every missing field, empty."""
    required = TRAINING_REQUIRED if usage == "training" else INFERENCE_REQUIRED
    empty = INFERENCE_MEANINGFUL if usage != "training" else ()
    return {f: "" for f in required if f not in desc or (f in empty and not str(desc[f]).strip())}


def dumps(desc: dict[str, Any]) -> bytes:
    """The file's bytes: sorted keys, two-space indent, one newline at the end (stable across packagings)."""
    return (json.dumps(desc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
