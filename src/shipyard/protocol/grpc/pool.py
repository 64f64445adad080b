"""The KServe V2 messages in a descriptor pool of their own.

``kserve_pb2`` registers the protobuf package ``inference`` in the default pool, where
``tritonclient.grpc`` and the kserve SDK register their own copies of the same package: the
second to load fails. A client builds the same message classes from the same serialized file
here, in a private pool, so it works in any process. The serialized descriptor is read from the
generated module's source (the one owner of it) without importing that module.
"""

from __future__ import annotations

import ast
import functools
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pool, message_factory

__all__ = ["KServeMessages", "kserve_messages"]

#: the file name the generated module registers (scripts/gen_protos.sh)
PROTO_FILE = "shipyard/protocol/grpc/kserve.proto"
#: the proto package, and so the prefix of every method path
SERVICE = "inference.GRPCInferenceService"


def _serialized_file() -> bytes:
    """The serialized ``FileDescriptorProto`` that ``kserve_pb2.py`` adds to the default pool."""
    source = resources.files(__package__).joinpath("kserve_pb2.py").read_text("utf-8")
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "AddSerializedFile" and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, bytes)):
            return node.args[0].value
    raise RuntimeError("kserve_pb2.py holds no AddSerializedFile(b'...') call; regenerate it "
                       "with scripts/gen_protos.sh")


class KServeMessages:
    """The message classes of ``kserve.proto`` by name (``messages.ModelInferRequest``); nested
    ones are attributes of their parent, as in generated code."""

    def __init__(self) -> None:
        pool = descriptor_pool.DescriptorPool()
        pool.AddSerializedFile(_serialized_file())
        file = pool.FindFileByName(PROTO_FILE)
        self._classes: dict[str, Any] = {
            name: message_factory.GetMessageClass(d)
            for name, d in file.message_types_by_name.items()
        }

    def __getattr__(self, name: str) -> Any:
        try:
            return self._classes[name]
        except KeyError:
            raise AttributeError(f"kserve.proto has no message {name!r}") from None

    def method(self, rpc: str) -> str:
        """The path of one RPC, e.g. ``/inference.GRPCInferenceService/ModelInfer``."""
        return f"/{SERVICE}/{rpc}"


@functools.cache
def kserve_messages() -> KServeMessages:
    """The KServe messages in their private pool (built once per process)."""
    return KServeMessages()
