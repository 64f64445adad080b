"""Triton's bidirectional ``ModelStreamInfer``, against real servers: with tritonclient's
streaming API (``start_stream`` / ``async_stream_infer``) and with a raw gRPC stream (to send
bytes no client would and to see every field of the answers).

Like test_protocols.py this process imports ``tritonclient.grpc``, so it never imports
``shipyard.serving.grpc`` (both register the protobuf package ``inference``).
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import DEMO_REPOSITORY, ServerProcess, start_server
from onnx_models import slow_model, slow_model_layers, write_repository

METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"


@pytest.fixture(scope="module")
def risk_session() -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(DEMO_REPOSITORY / "risk" / "1" / "model.onnx"), opts,
                                providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def cancer_rows() -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer().data.astype(np.float32)


def _request(model: str, rows: np.ndarray, request_id: str,
             datatype: str = "FP32") -> service_pb2.ModelInferRequest:
    msg = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    msg.inputs.add(name="features", datatype=datatype, shape=list(rows.shape))
    msg.raw_input_contents.append(rows.tobytes())
    return msg


class RawStream:
    """One ModelStreamInfer call whose requests are fed one at a time (``send``)."""

    def __init__(self, server: ServerProcess) -> None:
        self.channel = grpc.insecure_channel(server.grpc_url)
        self.outgoing: queue.Queue[bytes | None] = queue.Queue()
        call = self.channel.stream_stream(
            METHOD, request_serializer=lambda b: b,
            response_deserializer=service_pb2.ModelStreamInferResponse.FromString)
        self.call = call(self._requests(), timeout=60)

    def _requests(self) -> Iterator[bytes]:
        while (item := self.outgoing.get()) is not None:
            yield item

    def send(self, message: bytes | Any) -> None:
        self.outgoing.put(message if isinstance(message, bytes) else message.SerializeToString())

    def receive(self) -> service_pb2.ModelStreamInferResponse:
        answer: service_pb2.ModelStreamInferResponse = next(self.call)
        return answer

    def close_and_drain(self) -> list[service_pb2.ModelStreamInferResponse]:
        """Close the sending side; the answers still to come, up to the end of the stream."""
        self.outgoing.put(None)
        rest = list(self.call)
        assert self.call.code() == grpc.StatusCode.OK, self.call.details()
        return rest

    def close(self) -> None:
        self.outgoing.put(None)
        self.call.cancel()
        self.channel.close()


def test_every_request_on_a_stream_gets_its_own_rows(
        demo_server: ServerProcess, risk_session: ort.InferenceSession,
        cancer_rows: np.ndarray) -> None:
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    sent: dict[str, np.ndarray] = {}
    try:
        for i in range(60):  # 1 to 3 rows each, 120 distinct rows, sent without waiting
            n = 1 + i % 3
            rows = cancer_rows[2 * i: 2 * i + n]
            inp = grpcclient.InferInput("features", list(rows.shape), "FP32")
            inp.set_data_from_numpy(rows)
            rid = f"req-{i}"
            sent[rid] = rows
            client.async_stream_infer("risk", [inp], request_id=rid,
                                      outputs=[grpcclient.InferRequestedOutput("score")])
        got: dict[str, np.ndarray] = {}
        for _ in sent:
            result, error = results.get(timeout=20)
            assert error is None, error
            got[result.get_response().id] = result.as_numpy("score")
    finally:
        client.stop_stream()
        client.close()
    assert set(got) == set(sent)
    for rid, rows in sent.items():
        (expected,) = risk_session.run(["score"], {"features": rows})
        assert got[rid].shape == (len(rows), 1)
        np.testing.assert_allclose(got[rid], expected, rtol=0, atol=1e-6)


def test_a_failed_request_gets_an_error_with_its_id_and_the_stream_goes_on(
        demo_server: ServerProcess, risk_session: ort.InferenceSession,
        cancer_rows: np.ndarray) -> None:
    stream = RawStream(demo_server)
    try:
        cases = [
            (_request("risk", cancer_rows[:1, :29], "short"),
             "input 'features' of model 'risk' expects shape [-1, 30], got [1, 29]"),
            (_request("nope", cancer_rows[:1], "unknown"), "unknown model 'nope'"),
            (_request("risk", cancer_rows[:1].astype(np.float64), "fp64", "FP64"),
             "expects datatype FP32, got FP64"),
            (b"\xff\xff\xff not a protobuf", "not a valid inference.ModelInferRequest"),
        ]
        for message, expected in cases:
            stream.send(message)
            answer = stream.receive()
            assert expected in answer.error_message, answer.error_message
            want_id = "" if isinstance(message, bytes) else message.id
            assert answer.infer_response.id == want_id
            assert not answer.infer_response.outputs
        # the same stream still serves
        stream.send(_request("risk", cancer_rows[5:7], "good"))
        answer = stream.receive()
        assert answer.error_message == ""
        assert answer.infer_response.id == "good"
        assert answer.infer_response.model_name == "risk"
        score = np.frombuffer(answer.infer_response.raw_output_contents[0], np.float32)
        (expected_score,) = risk_session.run(["score"], {"features": cancer_rows[5:7]})
        np.testing.assert_allclose(score.reshape(2, 1), expected_score, rtol=0, atol=1e-6)
        assert stream.close_and_drain() == []
    finally:
        stream.close()


def test_the_stream_ends_after_the_last_answer_once_the_client_closes(
        demo_server: ServerProcess, cancer_rows: np.ndarray) -> None:
    stream = RawStream(demo_server)
    try:
        n = 600  # more than the server's STREAM_WINDOW (256), none of them read until the end
        for i in range(n):
            stream.send(_request("risk", cancer_rows[i % 500: i % 500 + 1], f"r{i}"))
        answers = stream.close_and_drain()  # closed with all n answers still owed
        assert sorted(a.infer_response.id for a in answers) == sorted(f"r{i}" for i in range(n))
        assert all(a.error_message == "" for a in answers)
    finally:
        stream.close()


def test_stream_requests_count_in_the_statistics(demo_server: ServerProcess,
                                                 cancer_rows: np.ndarray) -> None:
    client = grpcclient.InferenceServerClient(demo_server.grpc_url)
    try:
        def successes() -> int:
            stats = client.get_inference_statistics("risk", as_json=True)
            return int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))

        before = successes()
        stream = RawStream(demo_server)
        try:
            for i in range(7):
                stream.send(_request("risk", cancer_rows[i: i + 1], f"s{i}"))
            assert len(stream.close_and_drain()) == 7
        finally:
            stream.close()
        assert successes() - before >= 7
    finally:
        client.close()


def test_a_stopping_server_refuses_new_stream_requests_and_ends_the_stream(
        cancer_rows: np.ndarray) -> None:
    server = start_server(DEMO_REPOSITORY, "--grace-period", "10")
    stream = RawStream(server)
    try:
        stream.send(_request("risk", cancer_rows[:1], "before"))
        assert stream.receive().infer_response.id == "before"
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not any("stopping" in line for line in server.log):
            assert time.monotonic() < deadline, server.log[-5:]
            time.sleep(0.05)
        stream.send(_request("risk", cancer_rows[1:2], "after"))
        answer = stream.receive()
        assert "server is shutting down" in answer.error_message
        assert answer.infer_response.id == "after"
        # the server ends the stream by itself: nothing more, status OK
        ended = threading.Event()
        rest: list[Any] = []

        def drain() -> None:
            rest.extend(stream.call)
            ended.set()

        threading.Thread(target=drain, daemon=True).start()
        assert ended.wait(10), "the stream did not end"
        assert rest == []
        assert stream.call.code() == grpc.StatusCode.OK
        assert server.proc.wait(timeout=15) == 0
    finally:
        stream.close()
        server.stop()


def test_a_client_cancelling_mid_stream_leaves_the_server_serving(
        demo_server: ServerProcess, cancer_rows: np.ndarray) -> None:
    seen = len(demo_server.log)
    stream = RawStream(demo_server)
    for i in range(50):
        stream.send(_request("risk", cancer_rows[i: i + 1], f"c{i}"))
    stream.receive()  # the stream is up and answering
    stream.close()  # cancels the call with answers still owed
    with pytest.raises(grpc.RpcError) as cancelled:
        list(stream.call)
    assert cancelled.value.code() == grpc.StatusCode.CANCELLED
    again = RawStream(demo_server)
    try:
        again.send(_request("risk", cancer_rows[:1], "next"))
        assert again.receive().infer_response.id == "next"
        assert again.close_and_drain() == []
    finally:
        again.close()
    time.sleep(0.2)
    logged = "\n".join(demo_server.log[seen:])
    assert "Traceback" not in logged and "unhandled" not in logged, logged[-2000:]


def test_an_overloaded_queue_refuses_stream_requests_one_by_one_and_loses_none(
        tmp_path: Path) -> None:
    """Past max_queue_size a stream request gets a 'queue is full' error at once; every other
    request gets its own rows back; every request gets exactly one answer."""
    root = write_repository(tmp_path / "repo", {
        "slowq": (partial(slow_model, layers=slow_model_layers(0.02)), {
            "max_batch_size": 0, "instances": 1, "dynamic_batching": {"max_queue_size": 2}}),
    })
    server = start_server(root)
    stream = RawStream(server)
    try:
        sent = {}
        for i in range(40):
            x = np.full((1, 256), float(i), dtype=np.float32)
            msg = service_pb2.ModelInferRequest(model_name="slowq", id=f"q{i}")
            msg.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 256])
            msg.raw_input_contents.append(x.tobytes())
            sent[f"q{i}"] = x
            stream.send(msg)
        answers = stream.close_and_drain()
    finally:
        stream.close()
        server.stop()
    ids = [a.infer_response.id for a in answers]
    assert sorted(ids) == sorted(sent)  # one answer each
    refused = [a for a in answers if a.error_message]
    served = [a for a in answers if not a.error_message]
    assert refused and served
    for a in refused:
        assert "queue is full (2 requests waiting)" in a.error_message, a.error_message
    for a in served:
        out = np.frombuffer(a.infer_response.raw_output_contents[0], np.float32)
        np.testing.assert_array_equal(out.reshape(1, 256), sent[a.infer_response.id])
