"""gRPC frontend: KServe V2 ``inference.GRPCInferenceService`` and the seed's ``ModelService``.

Import :class:`shipyard.serving.grpc.service.GrpcFrontend` directly. This package does not import
it eagerly. The protos and their generated modules live in :mod:`shipyard.protocol.grpc`, shared
with the client; ``shipyard.protocol.grpc.model_service_pb2`` can be used by clients in a process
that also holds Triton's own ``inference`` protobuf descriptors.
"""
