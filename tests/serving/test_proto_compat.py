"""Shipyard's own KServe V2 proto is wire-compatible with Triton's and with the Open Inference
Protocol's: every message and field it declares has the same field number, type and cardinality
as in ``tritonclient``'s descriptors and in the kserve SDK's copy of the OIP proto
(``kserve.protocol.grpc.grpc_predict_v2``) wherever either declares it, every field is declared by
at least one of them, and every RPC has their request and response types (and streams where
theirs does).

The three descriptor sets cannot live in one process (all are package ``inference``), so
Shipyard's and kserve's sides are dumped by subprocesses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import tritonclient.grpc.model_config_pb2 as triton_config
import tritonclient.grpc.service_pb2 as triton_service

_DESCRIBE = """
def describe(modules):
    out = {}

    def fields(d):
        out[d.full_name] = {f.name: [f.number, f.type, f.is_repeated,
                                     f.message_type.full_name if f.message_type else "",
                                     f.enum_type.full_name if f.enum_type else ""]
                            for f in d.fields}
        for n in d.nested_types:
            fields(n)
        for e in d.enum_types:
            enums[e.full_name] = {v.name: v.number for v in e.values}

    enums = {}
    rpcs = {}
    for pb in modules:
        for d in pb.DESCRIPTOR.message_types_by_name.values():
            fields(d)
        for e in pb.DESCRIPTOR.enum_types_by_name.values():
            enums[e.full_name] = {v.name: v.number for v in e.values}
        for service in pb.DESCRIPTOR.services_by_name.values():
            if service.name == "GRPCInferenceService":
                rpcs.update({m.name: [m.input_type.full_name, m.output_type.full_name,
                                      m.client_streaming, m.server_streaming]
                             for m in service.methods})
    return {"messages": out, "enums": enums, "rpcs": rpcs}
"""

_DUMP = _DESCRIBE + """
import json, sys
if sys.argv[1] == "kserve":
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
else:
    from shipyard.protocol.grpc import kserve_pb2 as pb
print(json.dumps(describe([pb])))
"""

#: fields of the current OIP text that neither Triton's proto nor the kserve SDK's (0.21) has yet,
#: as ``open_inference_grpc.proto`` declares them
OIP_ONLY = {
    ("inference.ModelMetadataResponse", "properties"):
        [6, 11, True, "inference.ModelMetadataResponse.PropertiesEntry", ""],
}
#: where the kserve SDK's repository extension numbers a field differently from Triton's: its
#: load/unload requests carry the model name in field 1, Triton's repository_name. Shipyard keeps
#: Triton's numbering and takes field 1 as the model name when field 2 is empty (the SDK's
#: load_model / unload_model go through; test_kserve_sdk.py shows it).
KSERVE_RENUMBERED = {
    ("inference.RepositoryModelLoadRequest", "model_name"): 1,
    ("inference.RepositoryModelUnloadRequest", "model_name"): 1,
}


def _dump(which: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _DUMP, which], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def _triton() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(_DESCRIBE, namespace)
    result: dict[str, Any] = namespace["describe"]([triton_service, triton_config])
    return result


def test_every_shipyard_field_matches_triton_and_the_oip() -> None:
    ours, triton, oip = _dump("shipyard"), _triton(), _dump("kserve")
    checked = 0
    for message, fields in ours["messages"].items():
        if message.endswith("Entry"):  # map entries: key 1, value 2 by definition
            continue
        assert message in triton["messages"] or message in oip["messages"], (
            f"{message} is neither a Triton nor an OIP message")
        for name, spec in fields.items():
            declared = []
            for source, theirs in (("Triton", triton), ("OIP", oip)):
                other = theirs["messages"].get(message, {}).get(name)
                if other is None:
                    continue
                if source == "OIP" and (message, name) in KSERVE_RENUMBERED:
                    assert other[0] == KSERVE_RENUMBERED[message, name], (message, name)
                    assert other[1:] == spec[1:], (message, name)
                else:
                    assert other == spec, f"{message}.{name}: ours {spec}, {source} {other}"
                declared.append(source)
            if (message, name) in OIP_ONLY:
                assert not declared, f"{message}.{name} is in {declared} now: compare it there"
                assert spec == OIP_ONLY[message, name]
                continue
            assert declared, f"{message}.{name} is in neither Triton's nor the OIP's {message}"
            checked += 1
    assert checked > 150  # the whole proto was compared, not an empty dump
    for enum, values in ours["enums"].items():
        assert triton["enums"][enum] == values, enum
    for rpc, types in ours["rpcs"].items():
        theirs = triton["rpcs"].get(rpc) or oip["rpcs"].get(rpc)
        assert theirs == types, rpc


def test_shipyard_declares_every_oip_and_triton_rpc() -> None:
    """Every RPC of Triton's service and of the kserve SDK's, and every field of the OIP's
    messages, is in Shipyard's proto (so no client meets UNIMPLEMENTED for a missing method)."""
    ours, triton, oip = _dump("shipyard"), _triton(), _dump("kserve")
    assert set(triton["rpcs"]) | set(oip["rpcs"]) <= set(ours["rpcs"])
    for message, fields in oip["messages"].items():
        if message.endswith("Entry"):
            continue
        missing = set(fields) - set(ours["messages"][message])
        assert not missing, f"{message} lacks the OIP's {sorted(missing)}"
