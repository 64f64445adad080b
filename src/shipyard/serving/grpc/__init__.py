"""gRPC frontend: KServe V2 ``inference.GRPCInferenceService`` and the seed's ``ModelService``.

Import :class:`shipyard.serving.grpc.service.GrpcFrontend` directly. This package does not import
it eagerly, so ``shipyard.serving.grpc.protos.model_service_pb2`` can be used by clients in a
process that also holds Triton's own ``inference`` protobuf descriptors.
"""
