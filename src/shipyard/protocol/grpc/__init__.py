"""KServe V2 gRPC (``inference.GRPCInferenceService``) and the seed's ``ModelService``: the
``.proto`` files, their generated modules (``scripts/gen_protos.sh``), and what the server and
the client both need to read and write the messages.

- ``kserve_pb2`` / ``kserve_pb2_grpc``, ``model_service_pb2`` / ``model_service_pb2_grpc``: the
  generated modules, imported by the server. Importing ``kserve_pb2`` registers the protobuf
  package ``inference`` in protobuf's default pool, as ``tritonclient.grpc`` and the kserve SDK
  do with theirs, and no two of them load in one process.
- :mod:`.pool`: the same KServe messages in a descriptor pool of their own, for a client that
  must work beside tritonclient or the kserve SDK (``shipyard.client`` uses them).
- :mod:`.contents`: the typed ``*_contents`` field of each datatype and the parameter maps.

This package imports none of them eagerly.
"""
