"""The OpenAPI 3 document of the REST routes, and a self-contained /docs page (no CDN)."""

from __future__ import annotations

from typing import Any

from shipyard import __version__
from shipyard.serving.errors import ErrorCode
from shipyard.serving.http.errors import HTTP_STATUS
from shipyard.serving.http.routes import ROUTES, Route

__all__ = ["DOCS_HTML", "openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}

#: what each documented error code means on these routes
_ERROR_TEXT = {
    ErrorCode.INVALID_ARGUMENT: "Invalid request (or, for load, a model that failed to load)",
    ErrorCode.UNAUTHENTICATED: "Missing or wrong bearer token",
    ErrorCode.PERMISSION_DENIED: "Explicit model control is off",
    ErrorCode.NOT_FOUND: "Unknown model, version or route",
    ErrorCode.PAYLOAD_TOO_LARGE: "Body too large",
    ErrorCode.RESOURCE_EXHAUSTED: "Queue full, retry later",
    ErrorCode.UNAVAILABLE: "Not ready",
    ErrorCode.DEADLINE_EXCEEDED: "Deadline passed while queued",
    ErrorCode.ALREADY_EXISTS: "A region of that name is registered already",
    ErrorCode.UNIMPLEMENTED: "Not offered by this server (the message says why)",
}

#: the path parameters of the route patterns
_PARAMETERS = {
    "model_name": {"name": "model_name", "in": "path", "required": True,
                   "schema": {"type": "string"}},
    "model_version": {"name": "model_version", "in": "path", "required": True,
                      "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "region_name": {"name": "region_name", "in": "path", "required": True,
                    "schema": {"type": "string"}},
}

#: request bodies by schema name: (header parameters, requestBody)
_BODIES: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
    "InferRequest": (
        [{"name": "Inference-Header-Content-Length", "in": "header", "required": False,
          "schema": {"type": "integer"}}],
        {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
            "application/octet-stream": {"schema": {
                "type": "string", "format": "binary",
                "description": "Binary tensor data extension: the JSON request (its length "
                               "in Inference-Header-Content-Length), then each input's "
                               "bytes in the order of 'inputs', sized by "
                               "parameters.binary_data_size"}},
        }},
    ),
    "PredictRequest": (
        [{"name": "top_k", "in": "query", "required": False,
          "schema": {"type": "integer", "minimum": 1},
          "description": "labels per item (image and text bodies)"}],
        {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
            "multipart/form-data": {"schema": {
                "type": "object", "description": "every part with a filename is one encoded "
                "image (PNG/JPEG), in order; an optional field top_k",
                "properties": {"image": {"type": "array", "items": {
                    "type": "string", "format": "binary"}},
                               "top_k": {"type": "integer", "minimum": 1}}}},
        }},
    ),
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _answer(kind: str | None) -> dict[str, Any]:
    """The content of a 200 answer (see Route.answer)."""
    if kind is None:
        return {}
    if kind == "text":
        return {"content": {"text/plain": {"schema": {"type": "string"}}}}
    if kind in ("object", "array"):
        return _json({"type": kind})
    return _json({"$ref": f"#/components/schemas/{kind}"})


def _operation(route: Route) -> dict[str, Any]:
    params = [_PARAMETERS[s.strip("{}")] for s in route.pattern.split("/") if s.startswith("{")]
    op: dict[str, Any] = {"summary": route.summary}
    body: dict[str, Any] | None = None
    if route.body is not None:
        headers, body = _BODIES.get(
            route.body, ([], {"required": True,
                              **_json({"$ref": f"#/components/schemas/{route.body}"})}))
        params += headers
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    if route.bearer:
        op["security"] = [{"bearer": []}]
    responses: dict[str, Any] = {"200": {"description": route.ok or route.summary,
                                         **_answer(route.answer)}}
    for status, text in route.statuses:
        responses[str(status)] = {"description": text, **_answer(route.answer)}
    for code in route.errors:
        responses[str(HTTP_STATUS[code])] = {"description": _ERROR_TEXT[code], **_json(_ERROR)}
    op["responses"] = responses
    return op


def _paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in ROUTES:
        if route.documented:
            paths.setdefault(route.pattern, {})[route.method.lower()] = _operation(route)
    return paths


def openapi_document() -> dict[str, Any]:
    tensor_meta = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"type": "string"}, "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}}}}
    tensor_in = {
        "type": "object", "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": [
                "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                "INT64", "FP16", "FP32", "FP64", "BYTES"]},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "parameters": {"type": "object"},
            "data": {"type": "array", "items": {}},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Shipyard inference server", "version": __version__,
                 "description": "KServe V2 (Open Inference Protocol) REST API with Triton's "
                                "extensions, plus the simple /predict API."},
        "paths": _paths(),
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}},
                      "required": ["error"]},
            "ServerLiveResponse": {"type": "object", "required": ["live"],
                                   "properties": {"live": {"type": "boolean"}}},
            "ServerReadyResponse": {"type": "object", "required": ["ready"],
                                    "properties": {"ready": {"type": "boolean"}}},
            "ModelReadyResponse": {"type": "object", "required": ["name", "ready"],
                                   "properties": {"name": {"type": "string"},
                                                  "ready": {"type": "boolean"},
                                                  "reason": {"type": "string"}}},
            "ServerMetadataResponse": {
                "type": "object", "required": ["name", "version", "extensions"], "properties": {
                    "name": {"type": "string"}, "version": {"type": "string"},
                    "extensions": {"type": "array", "items": {"type": "string"}}}},
            "ModelMetadataResponse": {
                "type": "object", "required": ["name", "platform", "inputs", "outputs"],
                "properties": {
                    "name": {"type": "string"},
                    "versions": {"type": "array", "items": {"type": "string"}},
                    "platform": {"type": "string"},
                    "inputs": {"type": "array", "items": tensor_meta},
                    "outputs": {"type": "array", "items": tensor_meta},
                    "properties": {"type": "object",
                                   "additionalProperties": {"type": "string"}}}},
            "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"}, "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": tensor_in, "minItems": 1},
                "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                            "properties": {"name": {"type": "string"},
                                           "parameters": {"type": "object"}}}}}},
            "InferResponse": {
                "type": "object", "required": ["model_name", "id", "outputs"], "properties": {
                    "model_name": {"type": "string"}, "model_version": {"type": "string"},
                    "id": {"type": "string"}, "outputs": {"type": "array", "items": tensor_in}}},
            "ShmRegisterRequest": {"type": "object", "required": ["key", "byte_size"],
                                   "properties": {
                "key": {"type": "string", "description": "shm_open name, e.g. /input0"},
                "offset": {"type": "integer", "minimum": 0},
                "byte_size": {"type": "integer", "minimum": 1}}},
            "PredictRequest": {"type": "object", "properties": {
                "features": {"type": "array", "minItems": 1, "items": {
                    "oneOf": [{"type": "number"},
                              {"type": "array", "items": {"type": "number"}}]},
                    "description": "rows of numbers (one of features, images, image, text, "
                                   "texts)"},
                "images": {"type": "array", "minItems": 1, "items": {
                    "type": "string", "format": "byte"},
                    "description": "encoded PNG/JPEG files, base64"},
                "image": {"type": "string", "format": "byte"},
                "text": {"oneOf": [{"type": "string"},
                                   {"type": "array", "minItems": 1,
                                    "items": {"type": "string"}}],
                         "description": "texts for a model with one BYTES input (e.g. with "
                                        "text_normalize/tokenize preprocess steps): one per "
                                        "row; an empty text is refused by a tokenize step"},
                "texts": {"oneOf": [{"type": "string"},
                                    {"type": "array", "minItems": 1,
                                     "items": {"type": "string"}}],
                          "description": "the same as text"},
                "top_k": {"type": "integer", "minimum": 1,
                          "description": "labels per item (image and text bodies)"}}},
            "LogSettings": {"type": "object", "additionalProperties": False, "properties": {
                "log_info": {"type": "boolean"}, "log_warning": {"type": "boolean"},
                "log_error": {"type": "boolean"},
                "log_verbose_level": {"type": "integer", "minimum": 0},
                "log_format": {"type": "string", "enum": ["text", "json", "default"]},
                "log_file": {"type": "string", "enum": [""]}}},
            "TraceSettings": {"type": "object", "additionalProperties": False, "properties": {
                "trace_level": {"type": "array", "items": {"type": "string"}},
                **{k: {"type": "string"} for k in ("trace_rate", "trace_count", "log_frequency",
                                                   "trace_file", "trace_mode")}}},
            "PredictResponse": {"type": "object", "properties": {
                "model_name": {"type": "string"}, "model_version": {"type": "string"},
                "result": {"type": "array", "items": {}},
                "labels": {"type": "array", "items": {"type": ["string", "null"]}},
                "predictions": {"type": "array", "items": {"type": "array", "items": {
                    "type": "object", "properties": {"label": {"type": "string"},
                                                     "probability": {"type": "number"}}}},
                    "description": "image and text bodies: per item, the top labels, best "
                                   "first; 'probability' is absent where the model's outputs "
                                   "hold names but no scores"}}},
        }},
    }


DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shipyard API</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}code{background:#eee}</style>
</head><body><h1>Shipyard inference server</h1>
<p>KServe V2 REST API with Triton's extensions; the machine-readable document is
<a href="/openapi.json">/openapi.json</a>.</p>
<ul id="routes"></ul>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  const ul = document.getElementById('routes');
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const li = document.createElement('li');
      li.innerHTML = '<code>' + method.toUpperCase() + ' ' + path + '</code> ' + op.summary;
      ul.appendChild(li);
    }
  }
});
</script></body></html>
"""
