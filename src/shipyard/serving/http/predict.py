"""The bodies ``POST /predict`` accepts, read into a protocol-free :class:`PredictInput`.

- JSON ``{"features": ...}`` (the seed's API: rows of numbers or objects of column values);
- JSON ``{"images": ["<base64>", ...]}`` or ``{"image": "<base64>"}``: encoded PNG/JPEG files;
- JSON ``{"text": "..."}`` or ``{"text": ["...", ...]}`` (``"texts"`` is the same field: either
  name takes one string or a list of them): texts, one row each of a text model's BYTES input;
- ``multipart/form-data``: every part that carries a file (``filename=``) is one image, in
  order (``curl -F image=@seven.png``); a plain field ``top_k`` may say how many labels.

``top_k`` may also come as a JSON field or the query string (``/predict?top_k=3``).
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
from typing import Any
from urllib.parse import parse_qs

from shipyard.serving.errors import InvalidInput, brief
from shipyard.serving.simple import PredictInput

__all__ = ["parse_predict_form", "parse_predict_json"]

#: the fields of a JSON /predict body; exactly one of the first five, and optionally top_k
_BODY_KEYS = ("features", "images", "image", "text", "texts")
_JSON_KEYS = frozenset({*_BODY_KEYS, "top_k"})


def _top_k(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{where} 'top_k' must be a positive integer (the number of labels "
                           f"to return per item), got {brief(value)}")
    return value


def _query_top_k(query: bytes) -> int | None:
    values = parse_qs(query.decode("latin-1")).get("top_k")
    return _top_k(values[-1], "query parameter") if values else None


def parse_predict_json(doc: Any, query: bytes) -> PredictInput:
    """A JSON body of /predict (already parsed)."""
    top_k = _query_top_k(query)
    if not isinstance(doc, dict):  # a bare list: the seed's rows of features
        return PredictInput(features=doc, top_k=top_k)
    extra = set(doc) - _JSON_KEYS
    given = [k for k in _BODY_KEYS if k in doc]
    if extra or len(given) != 1:
        raise InvalidInput(
            "body must be {\"features\": [...]} (rows of numbers), {\"images\": [\"<base64>\", "
            "...]} or {\"image\": \"<base64>\"} (encoded PNG/JPEG files), or {\"text\": \"...\"} "
            "or {\"text\": [\"...\", ...]} (texts; \"texts\" is the same field), optionally with "
            f"\"top_k\"; got field(s) {sorted(doc)}")
    top_k = _top_k(doc.get("top_k"), "body") or top_k
    (key,) = given
    if key == "features":
        return PredictInput(features=doc["features"], top_k=top_k)
    if key in ("text", "texts"):
        return PredictInput(items=_texts(key, doc[key]), kind="texts", top_k=top_k)
    items = [doc["image"]] if key == "image" else doc["images"]
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"'images' must be a non-empty list of base64 strings, got "
                           f"{brief(items)}")
    images = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidInput(f"images[{i}] must be a base64 string, got {brief(item)}")
        if item.startswith("data:") and "," in item:  # a data: URL, as browsers make them
            item = item.split(",", 1)[1]
        try:
            images.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"images[{i}] is not valid base64 ({exc}); send the file's bytes "
                               "base64-encoded") from exc
    return PredictInput(items=images, kind="images", top_k=top_k)


def _texts(key: str, value: Any) -> list[bytes]:
    """``text``/``texts``: one string or a non-empty list of strings -> UTF-8 items."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"'{key}' must be a string or a non-empty list of strings (one per "
                           f"text), got {brief(value)}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidInput(f"{key}[{i}] must be a string (the text itself), got "
                               f"{brief(item)}")
        try:
            out.append(item.encode("utf-8"))
        except UnicodeEncodeError as exc:  # a lone surrogate some parsers let through
            raise InvalidInput(f"{key}[{i}] is not valid unicode ({exc.reason} at character "
                               f"{exc.start}); send UTF-8 text") from exc
    return out


def parse_predict_form(content_type: bytes, body: bytes, query: bytes) -> PredictInput:
    """A ``multipart/form-data`` body of /predict: its file parts, in order."""
    head = b"Content-Type: " + content_type + b"\r\nMIME-Version: 1.0\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.get_boundary() is None:
        raise InvalidInput("multipart/form-data body without a boundary or parts; send files "
                           "as form parts (curl -F image=@file.png)")
    images: list[bytes] = []
    top_k = _query_top_k(query)
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None:
            images.append(data)
        elif name == "top_k":
            top_k = _top_k(data.decode("utf-8", "replace").strip(), "form field")
        else:
            raise InvalidInput(f"form field {name!r} is not used by /predict: send image files "
                               "(parts with a filename) and optionally a 'top_k' field")
    if not images:
        raise InvalidInput("multipart/form-data body has no file parts; send images as files "
                           "(curl -F image=@file.png)")
    return PredictInput(items=images, kind="images", top_k=top_k)
