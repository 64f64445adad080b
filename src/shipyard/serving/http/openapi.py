"""The OpenAPI 3 document of the REST routes, and a self-contained /docs page (no CDN)."""

from __future__ import annotations

from typing import Any

from shipyard import __version__

__all__ = ["DOCS_HTML", "openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Invalid request (or, for load, a model that failed to load)",
            404: "Unknown model, version or route",
            413: "Body too large", 429: "Queue full, retry later", 503: "Not ready",
            504: "Deadline passed while queued"}
    return {str(c): {"description": text[c], **_json(_ERROR)} for c in codes}


_MODEL = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "model_version", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"}}


def _model_routes(prefix: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    infer = {
        "post": {
            "summary": "KServe V2 inference (JSON, or the binary tensor data extension)",
            "parameters": [*params, {"name": "Inference-Header-Content-Length", "in": "header",
                                     "required": False, "schema": {"type": "integer"}}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
                "application/octet-stream": {"schema": {
                    "type": "string", "format": "binary",
                    "description": "Binary tensor data extension: the JSON request (its length "
                                   "in Inference-Header-Content-Length), then each input's "
                                   "bytes in the order of 'inputs', sized by "
                                   "parameters.binary_data_size"}},
            }},
            "responses": {"200": {"description": "Outputs; binary outputs follow the JSON part "
                                                 "(application/octet-stream, its length in "
                                                 "Inference-Header-Content-Length)",
                                  **_json({"$ref": "#/components/schemas/InferResponse"})},
                          **_errors(400, 404, 413, 429, 503, 504)},
        }
    }
    predict = {
        "post": {
            "summary": "Simple API: rows of features in, one result per row out",
            "parameters": params,
            "requestBody": {"required": True,
                            **_json({"$ref": "#/components/schemas/PredictRequest"})},
            "responses": {"200": {"description": "Results",
                                  **_json({"$ref": "#/components/schemas/PredictResponse"})},
                          **_errors(400, 404, 413, 429, 503, 504)},
        }
    }

    def get(summary: str, schema: dict[str, Any] | None = None,
            codes: tuple[int, ...] = (404,)) -> dict[str, Any]:
        ok: dict[str, Any] = {"description": summary}
        if schema is not None:
            ok.update(_json(schema))
        return {"get": {"summary": summary, "parameters": params,
                        "responses": {"200": ok, **_errors(*codes)}}}

    return {
        prefix: get("Model metadata", {"type": "object"}, (404, 503)),
        f"{prefix}/ready": get("200 when the model is ready", None, (404, 503)),
        f"{prefix}/config": get("Model configuration (Triton's JSON)", {"type": "object"},
                                (404, 503)),
        f"{prefix}/stats": get("Model statistics (Triton's JSON)", {"type": "object"}),
        f"{prefix}/infer": infer,
        f"{prefix}/predict": predict,
    }


def _control(summary: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "parameters": [_MODEL],
        "security": [{"bearer": []}],
        "responses": {"200": {"description": "Done"},
                      "401": {"description": "Missing or wrong bearer token", **_json(_ERROR)},
                      "403": {"description": "Explicit model control is off", **_json(_ERROR)},
                      **_errors(400, 404)},
    }}


def openapi_document() -> dict[str, Any]:
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
    paths: dict[str, Any] = {
        "/v2": {"get": {"summary": "Server metadata",
                        "responses": {"200": {"description": "Metadata",
                                              **_json({"type": "object"})}}}},
        "/v2/health/live": {"get": {"summary": "Liveness",
                                    "responses": {"200": {"description": "Alive"}}}},
        "/v2/health/ready": {"get": {"summary": "Readiness",
                                     "responses": {"200": {"description": "Ready"},
                                                   "503": {"description": "Not ready"}}}},
        "/v2/models/stats": {"get": {"summary": "Statistics of every model",
                                     "responses": {"200": {"description": "Statistics",
                                                           **_json({"type": "object"})}}}},
        "/v2/repository/index": {"post": {"summary": "Models in the repository and their state",
                                          "responses": {"200": {"description": "Index",
                                                                **_json({"type": "array"})}}}},
        "/v2/repository/models/{model_name}/load": _control("Load or reload a model (explicit "
                                                            "model control, bearer token)"),
        "/v2/repository/models/{model_name}/unload": _control("Unload a model after its queued "
                                                              "requests finish (explicit model "
                                                              "control, bearer token)"),
        "/predict": {"post": {
            "summary": "Simple API on the default model",
            "requestBody": {"required": True,
                            **_json({"$ref": "#/components/schemas/PredictRequest"})},
            "responses": {"200": {"description": "Results",
                                  **_json({"$ref": "#/components/schemas/PredictResponse"})},
                          **_errors(400, 404, 413, 429, 503, 504)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": {"description": "Text exposition format",
                                                   "content": {"text/plain": {
                                                       "schema": {"type": "string"}}}}}}},
    }
    paths.update(_model_routes("/v2/models/{model_name}", [_MODEL]))
    paths.update(_model_routes("/v2/models/{model_name}/versions/{model_version}",
                               [_MODEL, _VERSION]))
    return {
        "openapi": "3.0.3",
        "info": {"title": "Shipyard inference server", "version": __version__,
                 "description": "KServe V2 (Open Inference Protocol) REST API with Triton's "
                                "extensions, plus the simple /predict API."},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}},
                      "required": ["error"]},
            "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"}, "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": tensor_in, "minItems": 1},
                "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                            "properties": {"name": {"type": "string"},
                                           "parameters": {"type": "object"}}}}}},
            "InferResponse": {"type": "object", "properties": {
                "model_name": {"type": "string"}, "model_version": {"type": "string"},
                "id": {"type": "string"}, "outputs": {"type": "array", "items": tensor_in}}},
            "PredictRequest": {"type": "object", "required": ["features"], "properties": {
                "features": {"type": "array", "minItems": 1, "items": {
                    "oneOf": [{"type": "number"},
                              {"type": "array", "items": {"type": "number"}}]}}}},
            "PredictResponse": {"type": "object", "properties": {
                "model_name": {"type": "string"}, "model_version": {"type": "string"},
                "result": {"type": "array", "items": {}},
                "labels": {"type": "array", "items": {"type": "string"}}}},
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
