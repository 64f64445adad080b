"""A small, strict reader of protobuf text format: the subset Triton's ``config.pbtxt`` uses.

Fields are ``name: value`` (strings in ``"..."`` or ``'...'``, adjacent strings joined;
integers; floats; enum names such as ``TYPE_FP32``; ``true`` / ``false``), nested messages
``name { ... }`` (or ``name: { ... }``, or ``< ... >``), lists ``name: [a, b]`` and
``name [ { ... }, { ... } ]``, and ``#`` comments. Fields may be separated by ``,`` or ``;``.

The result has the shape of the message as JSON (what Triton serves at ``.../config``): a
field given more than once, or given as a list, or known to be repeated in Triton's
``model_config.proto`` (``input``, ``dims``, ...), becomes a list; Triton's map fields
(``parameters`` and the like: entries ``{ key: ... value: ... }``) become objects. A field
this server reads that takes one value (``name``, ``max_batch_size``, ``data_type``, ...)
given twice is an error naming both lines. Every syntax error names the line and column and
says what was expected. No schema is needed beyond these name tables and nothing is imported
but the protocol's error type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shipyard.protocol.errors import InvalidInput

__all__ = ["PbtxtDocument", "parse_pbtxt"]

#: Triton's repeated fields (model_config.proto): always lists, even when given once
REPEATED = frozenset({
    "input", "output", "batch_input", "batch_output", "instance_group", "model_warmup", "dims",
    "shape", "preferred_batch_size", "versions", "gpus", "secondary_devices", "profile",
    "step", "control_input", "control", "state", "initial_state", "agents",
    "gpu_execution_accelerator", "cpu_execution_accelerator", "source_input",
    "int32_false_true", "fp32_false_true", "bool_false_true", "int32_start_end",
    "data_type_list",
})
#: Triton's map fields: ``{ key: K value: V }`` entries -> {K: V}
MAPS = frozenset({"parameters", "cc_model_filenames", "metric_tags", "input_map",
                  "output_map", "inputs", "priority_queue_policy"})
#: fields this server reads that take one value: given twice is an error
SINGULAR = frozenset({
    "name", "platform", "backend", "max_batch_size", "default_model_filename", "data_type",
    "format", "kind", "count", "max_queue_delay_microseconds", "num_versions", "key", "value",
    "string_value", "label_filename", "version_policy", "dynamic_batching", "reshape",
    "is_shape_tensor", "optional", "allow_ragged_batch", "max_queue_size",
    "default_queue_policy", "latest", "all", "specific", "decoupled",
})

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\f\v]+) | (?P<newline>\n) | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>-?(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[fF]?
               |-?(?:inf|infinity|nan)\b)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}\[\]<>:,;])
""", re.VERBOSE | re.IGNORECASE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "?": "?"}
_CLOSE = {"{": "}", "<": ">"}
_SYNTAX = "(text format: 'name: value', 'name { ... }', 'name: [a, b]'; '#' starts a comment)"


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    line: int
    col: int


@dataclass
class PbtxtDocument:
    """A parsed text-format message."""

    fields: dict[str, Any]
    """The message as JSON would hold it (lists for repeated fields, objects for maps and
    nested messages)."""
    lines: dict[str, int] = field(default_factory=dict)
    """Top-level field name -> the line where it first appears (for messages naming it)."""


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.toks = self._tokens(text)
        self.i = 0

    def error(self, tok: _Tok, what: str) -> InvalidInput:
        return InvalidInput(f"{self.where}:{tok.line}:{tok.col}: {what}")

    def _tokens(self, text: str) -> list[_Tok]:
        toks: list[_Tok] = []
        pos, line, start = 0, 1, 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            col = pos - start + 1
            if m is None:
                bad = text[pos]
                hint = ("a string is not closed on its line" if bad in "\"'"
                        else f"unexpected character {bad!r}")
                raise InvalidInput(f"{self.where}:{line}:{col}: {hint} {_SYNTAX}")
            kind = m.lastgroup or ""
            if kind == "newline":
                line, start = line + 1, m.end()
            elif kind not in ("space", "comment"):
                toks.append(_Tok(kind, m.group(), line, col))
            pos = m.end()
        toks.append(_Tok("end", "end of file", line, pos - start + 1))
        return toks

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str, after: str) -> _Tok:
        tok = self.take()
        if tok.text != text:
            raise self.error(tok, f"expected {text!r} {after}, got {tok.text!r}")
        return tok

    # -- grammar ------------------------------------------------------------------------------

    def message(self, close: str | None, opened: _Tok | None = None
                ) -> list[tuple[str, Any, _Tok]]:
        """Fields until ``close`` (or the end of the file when None); ``opened``: the field
        whose message this is (for the error when it is never closed)."""
        out: list[tuple[str, Any, _Tok]] = []
        while True:
            tok = self.peek()
            if close is None and tok.kind == "end":
                return out
            if close is not None and tok.text == close:
                self.take()
                return out
            if tok.kind == "end":
                what = (f"field {opened.text!r} (opened on line {opened.line})"
                        if opened is not None else "the message")
                raise self.error(tok, f"expected {close!r} to close {what}, got the end of "
                                 f"the file; add the missing {close!r}")
            if tok.kind != "ident":
                raise self.error(tok, f"expected a field name, got {tok.text!r} {_SYNTAX}")
            self.take()
            out.append((tok.text, self.field_value(tok), tok))
            if self.peek().text in (",", ";"):
                self.take()

    def field_value(self, name: _Tok) -> Any:
        tok = self.peek()
        if tok.text == ":":
            self.take()
            tok = self.peek()
            if tok.text in _CLOSE:
                return self.nested(name)
            if tok.text == "[":
                return self.listing(name, messages_only=False)
            return self.scalar(name)
        if tok.text in _CLOSE:
            return self.nested(name)
        if tok.text == "[":
            return self.listing(name, messages_only=True)
        raise self.error(tok, f"expected ':' or '{{' after field {name.text!r}, got "
                         f"{tok.text!r} {_SYNTAX}")

    def nested(self, name: _Tok) -> list[tuple[str, Any, _Tok]]:
        opening = self.take()
        return self.message(_CLOSE[opening.text], name)

    def listing(self, name: _Tok, *, messages_only: bool) -> _List:
        self.take()  # [
        items = _List()
        if self.peek().text == "]":
            self.take()
            return items
        while True:
            tok = self.peek()
            if tok.text in _CLOSE:
                items.append(self.nested(name))
            elif messages_only:
                raise self.error(tok, f"field {name.text!r}: a list without ':' holds messages "
                                 f"({{ ... }}), got {tok.text!r}; write '{name.text}: [...]' "
                                 "for a list of values")
            else:
                items.append(self.scalar(name))
            tok = self.take()
            if tok.text == "]":
                return items
            if tok.text != ",":
                raise self.error(tok, f"field {name.text!r}: expected ',' or ']' in the list, "
                                 f"got {tok.text!r}")

    def scalar(self, name: _Tok) -> Any:
        tok = self.take()
        if tok.kind == "string":
            text = self.unquote(tok)
            while self.peek().kind == "string":  # "a" "b" is "ab"
                text += self.unquote(self.take())
            return text
        if tok.kind == "number":
            return self.number(tok)
        if tok.kind == "ident":
            return {"true": True, "True": True, "false": False, "False": False}.get(
                tok.text, tok.text)
        raise self.error(tok, f"field {name.text!r}: expected a value (a number, a quoted "
                         f"string, an enum name, true or false), got {tok.text!r}")

    def number(self, tok: _Tok) -> int | float:
        text = tok.text.lower()
        body = text.lstrip("-")
        sign = -1 if text.startswith("-") else 1
        if body.startswith("0x"):
            return sign * int(body, 16)
        if body in ("inf", "infinity"):
            return sign * float("inf")
        if body == "nan":
            return float("nan")
        if any(c in body for c in ".ef"):
            return float(text.rstrip("f"))
        return int(text)

    def unquote(self, tok: _Tok) -> str:
        body, out, k = tok.text[1:-1], [], 0
        while k < len(body):
            c = body[k]
            if c != "\\":
                out.append(c)
                k += 1
                continue
            nxt = body[k + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                k += 2
            elif nxt in "xX" and re.match(r"[0-9a-fA-F]{1,2}", body[k + 2:]):
                digits = re.match(r"[0-9a-fA-F]{1,2}", body[k + 2:])
                assert digits is not None
                out.append(chr(int(digits.group(), 16)))
                k += 2 + len(digits.group())
            elif nxt in "01234567":
                digits = re.match(r"[0-7]{1,3}", body[k + 1:])
                assert digits is not None
                out.append(chr(int(digits.group(), 8)))
                k += 1 + len(digits.group())
            else:
                raise self.error(tok, f"unknown escape '\\{nxt}' in a string")
        return "".join(out)

    # -- to JSON's shape ----------------------------------------------------------------------

    def to_json(self, fields: list[tuple[str, Any, _Tok]]) -> dict[str, Any]:
        seen: dict[str, list[tuple[Any, _Tok]]] = {}
        listed: set[str] = set()  # given as [ ... ] at least once
        for name, value, tok in fields:
            if name in SINGULAR and (isinstance(value, _List) or name in seen):
                first = seen[name][0][1] if name in seen else tok
                again = "given twice" if name in seen else "given as a list"
                raise self.error(tok, f"field {name!r} {again} (first on line {first.line}); "
                                 "it takes one value")
            if isinstance(value, _List):
                listed.add(name)
                seen.setdefault(name, []).extend((v, tok) for v in value)
            else:
                seen.setdefault(name, []).append((value, tok))
        out: dict[str, Any] = {}
        for name, items in seen.items():
            values = [self.to_json(v) if isinstance(v, list) else v for v, _ in items]
            if name in MAPS:
                out[name] = self.map_entries(name, items, values)
            elif name in REPEATED or name in listed or len(values) != 1:
                out[name] = values
            else:
                out[name] = values[0]
        return out

    def map_entries(self, name: str, items: list[tuple[Any, _Tok]],
                    values: list[Any]) -> dict[str, Any]:
        entries: dict[str, Any] = {}
        for (_, tok), value in zip(items, values, strict=True):
            if not isinstance(value, dict) or "key" not in value:
                raise self.error(tok, f"map field {name!r}: each entry is "
                                 f"'{name} {{ key: \"...\" value: ... }}'")
            entries[str(value["key"])] = value.get("value")
        return entries


class _List(list[Any]):
    """A ``[ ... ]`` list as written (told apart from a nested message's field list)."""


def parse_pbtxt(text: str, where: str) -> PbtxtDocument:
    """Parse protobuf text format (Triton's ``config.pbtxt``); raise InvalidInput naming
    ``where``, the line and column, and what was expected."""
    parser = _Parser(text, where)
    fields = parser.message(None)
    lines: dict[str, int] = {}
    for name, _, tok in fields:
        lines.setdefault(name, tok.line)
    return PbtxtDocument(parser.to_json(fields), lines)
