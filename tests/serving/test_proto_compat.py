"""Shipyard's own KServe V2 proto is wire-compatible with Triton's: every message and field it
declares has the same field number, type and cardinality as in ``tritonclient``'s descriptors,
and every RPC has Triton's request and response types (and streams where Triton's does).

The two descriptor sets cannot live in one process (both are package ``inference``), so
Shipyard's side is dumped by a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import tritonclient.grpc.model_config_pb2 as triton_config
import tritonclient.grpc.service_pb2 as triton_service

_DUMP = """
import json
from shipyard.serving.grpc.protos import kserve_pb2 as pb

def fields(d, out):
    out[d.full_name] = {f.name: [f.number, f.type, f.is_repeated,
                                 f.message_type.full_name if f.message_type else "",
                                 f.enum_type.full_name if f.enum_type else ""]
                        for f in d.fields}
    for n in d.nested_types:
        fields(n, out)

out = {}
for d in pb.DESCRIPTOR.message_types_by_name.values():
    fields(d, out)
enums = {e.full_name: {v.name: v.number for v in e.values}
         for e in pb.DESCRIPTOR.enum_types_by_name.values()}
rpcs = {m.name: [m.input_type.full_name, m.output_type.full_name, m.client_streaming,
                 m.server_streaming]
        for m in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods}
print(json.dumps({"messages": out, "enums": enums, "rpcs": rpcs}))
"""


def _triton_messages() -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(d: Any) -> None:
        out[d.full_name] = d
        for n in d.nested_types:
            walk(n)

    for module in (triton_service, triton_config):
        for d in module.DESCRIPTOR.message_types_by_name.values():
            walk(d)
    return out


def test_every_shipyard_field_matches_triton() -> None:
    ours = json.loads(subprocess.run([sys.executable, "-c", _DUMP], check=True,
                                     capture_output=True, text=True, timeout=60).stdout)
    theirs = _triton_messages()
    checked = 0
    for message, fields in ours["messages"].items():
        if message.endswith("Entry"):  # map entries: key 1, value 2 by definition
            continue
        assert message in theirs, f"{message} is not a Triton message"
        triton_fields = {f.name: f for f in theirs[message].fields}
        for name, (number, ftype, repeated, msg_type, enum_type) in fields.items():
            f = triton_fields.get(name)
            assert f is not None, f"{message}.{name} is not in Triton's {message}"
            assert (f.number, f.type, f.is_repeated) == (number, ftype, repeated), (
                f"{message}.{name}: ours {(number, ftype, repeated)}, "
                f"Triton {(f.number, f.type, f.is_repeated)}")
            if msg_type:
                assert f.message_type.full_name == msg_type, f"{message}.{name}"
            if enum_type:
                assert f.enum_type.full_name == enum_type, f"{message}.{name}"
            checked += 1
    assert checked > 100  # the whole proto was compared, not an empty dump
    for enum, values in ours["enums"].items():
        triton_enum = triton_config.DESCRIPTOR.enum_types_by_name[enum.split(".")[-1]]
        assert {v.name: v.number for v in triton_enum.values} == values
    service = triton_service.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    triton_rpcs = {m.name: [m.input_type.full_name, m.output_type.full_name,
                            m.client_streaming, m.server_streaming]
                   for m in service.methods}
    for rpc, types in ours["rpcs"].items():
        assert triton_rpcs[rpc] == types, rpc
