"""``text_normalize`` and ``tokenize``: BYTES items (UTF-8) -> normalised text -> token ids."""

from __future__ import annotations

import html
import unicodedata
from pathlib import Path, PurePath
from typing import Any, Literal

import numpy as np

from shipyard.transforms import _checks
from shipyard.transforms._text_rules import (
    EMAIL_PATTERN,
    EMAIL_REGEX,
    MASKS,
    NUMBER_PATTERN,
    NUMBER_REGEX,
    REPLACE_MODES,
    URL_HINT,
    URL_PATTERN,
    URL_REGEX,
    WHITESPACE_REGEX,
    Replace,
    punctuation_table,
)
from shipyard.transforms.base import Array, Batch, Spec, Specs, Step
from shipyard.transforms.errors import StepConfigError, TransformError

__all__ = [
    "EMAIL_PATTERN",
    "MASKS",
    "NUMBER_PATTERN",
    "URL_PATTERN",
    "Replace",
    "TextNormalize",
    "Tokenize",
    "texts",
]

_FORMS = ("NFKC", "NFC", "NFKD", "NFD", None)
_PAD_TOKENS = ("[PAD]", "<pad>")


def _text(index: int, item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, bytes | bytearray | memoryview):
        try:
            return bytes(item).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TransformError(
                f"not valid UTF-8 ({exc.reason} at byte {exc.start})", index
            ) from None
    raise TransformError(f"expected text (UTF-8 bytes), got {type(item).__name__}", index)


def texts(step: str, batch: Batch) -> list[str]:
    """The items of a BYTES batch as ``str``; invalid UTF-8 is refused with the item's index."""
    array = _checks.single(step, batch)
    if array.ndim != 1:
        raise TransformError(f"{step} takes one text per item (shape [N]), got shape "
                             f"{list(array.shape)}")
    return [_text(i, item) for i, item in enumerate(array.tolist())]


def _bytes_array(items: list[bytes]) -> Array:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _text_spec(step: str, spec: Specs) -> Spec:
    datatype, shape = _checks.single_spec(step, spec, ("BYTES",))
    if len(shape) != 1:
        raise StepConfigError(f"takes one text per item (shape [-1]), but gets {list(shape)}",
                              step)
    return datatype, shape


class TextNormalize(Step):
    """Clean every text in a fixed order; out come UTF-8 bytes.

    Parameters (every one off by default except ``form`` and ``strip``):
        html_unescape: ``html.unescape`` (``&amp;`` ``&lt;`` ``&#39;`` ...); default ``false``.
        form: ``"NFKC"`` (default), ``"NFC"``, ``"NFKD"``, ``"NFD"`` or ``null`` for none.
        urls: ``"keep"`` (default), ``"remove"`` (each match becomes a space) or ``"mask"``
            (each match becomes `` xxurl ``); what matches is :data:`URL_PATTERN`.
        emails: the same for :data:`EMAIL_PATTERN`, masked as `` xxemail ``.
        numbers: the same for :data:`NUMBER_PATTERN`, masked as `` xxnum ``.
        lowercase: ``str.lower``; default ``false``.
        punctuation: replace every Unicode punctuation character (category ``P*``) by a
            space; symbols (``S*``: ``£ $ € +``, emoji) stay; default ``false``.
        collapse_whitespace: every run of whitespace (``\\s+``) becomes one space; default
            ``false``.
        strip: remove leading and trailing whitespace; default ``true``.

    They run in this order: html_unescape -> form -> urls -> emails -> numbers -> lowercase ->
    punctuation -> collapse_whitespace -> strip. So an escaped ``&#64;`` is an ``@`` before
    e-mails are looked for, a masked number leaves no digit for a later step, and the masks
    (lower-case letters only) survive ``lowercase`` and ``punctuation``. Masks and removals
    leave extra spaces; ``collapse_whitespace`` folds them.
    """

    name = "text_normalize"

    def __init__(self, form: Literal["NFKC", "NFC", "NFKD", "NFD"] | None = "NFKC",
                 lowercase: bool = False, strip: bool = True, html_unescape: bool = False,
                 urls: Replace = "keep", emails: Replace = "keep", numbers: Replace = "keep",
                 punctuation: bool = False, collapse_whitespace: bool = False) -> None:
        self.form = _checks.choice(self.name, "form", form, _FORMS)
        self.lowercase = _checks.boolean(self.name, "lowercase", lowercase)
        self.strip = _checks.boolean(self.name, "strip", strip)
        self.html_unescape = _checks.boolean(self.name, "html_unescape", html_unescape)
        self.urls: Replace = _checks.choice(self.name, "urls", urls, REPLACE_MODES)
        self.emails: Replace = _checks.choice(self.name, "emails", emails, REPLACE_MODES)
        self.numbers: Replace = _checks.choice(self.name, "numbers", numbers, REPLACE_MODES)
        self.punctuation = _checks.boolean(self.name, "punctuation", punctuation)
        self.collapse_whitespace = _checks.boolean(self.name, "collapse_whitespace",
                                                   collapse_whitespace)

    def input_spec(self) -> Spec:
        return ("BYTES", (-1,))

    def output_spec(self, input_spec: Specs) -> Specs:
        return _text_spec(self.name, input_spec)

    def load(self) -> TextNormalize:
        """Build the punctuation table (about 0.1 s, once per process) when ``punctuation`` is
        on, so that loading the model pays for it rather than its first request."""
        if self.punctuation:
            punctuation_table()
        return self

    def normalize(self, text: str) -> str:
        """One text, normalised."""
        if self.html_unescape:
            text = html.unescape(text)
        if self.form is not None:
            text = unicodedata.normalize(self.form, text)
        for regex, mode, mask in ((URL_REGEX, self.urls, MASKS["urls"]),
                                  (EMAIL_REGEX, self.emails, MASKS["emails"]),
                                  (NUMBER_REGEX, self.numbers, MASKS["numbers"])):
            if mode != "keep" and (regex is not URL_REGEX or URL_HINT.search(text)):
                text = regex.sub(" " if mode == "remove" else f" {mask} ", text)
        if self.lowercase:
            text = text.lower()
        if self.punctuation:
            text = text.translate(punctuation_table())
        if self.collapse_whitespace:
            text = WHITESPACE_REGEX.sub(" ", text)
        return text.strip() if self.strip else text

    def __call__(self, batch: Batch) -> Batch:
        return _bytes_array([self.normalize(t).encode("utf-8") for t in texts(self.name, batch)])


class Tokenize(Step):
    """Token ids from a Hugging Face ``tokenizers`` JSON file, padded to ``max_length``.

    Parameters:
        path: the ``tokenizer.json`` file, relative to the model's version folder; required.
        max_length: the length of every row, special tokens included; default ``128``.
        truncation: default ``false``: a text of more than ``max_length`` tokens is refused
            with its index; ``true`` cuts it (keeping the special tokens the tokenizer adds).
        attention_mask: also give an ``attention_mask`` (1 for tokens, 0 for padding); then
            the output is a dict ``{input_ids, attention_mask}``; default ``false``.
        add_special_tokens: let the tokenizer add ``[CLS]``/``[SEP]`` and the like; default
            ``true``.
        pad_id: the padding id; default ``null``: the tokenizer's own padding id, else the id
            of ``[PAD]`` or ``<pad>`` (loading fails if there is none).
        allow_empty: accept an empty (or all-whitespace) text; default ``false``.
        padding: ``max_length`` (default): every row is ``max_length`` long; ``longest``:
            rows are as long as the batch's longest text (dynamic padding: a batch of short
            texts makes short rows; the model must take any length up to ``max_length``).
        base_dir: given when the pipeline is built, not declared: the version folder.

    The output is ``int64`` ``[N, max_length]`` (``[N, longest]`` with ``padding: longest``).
    """

    name = "tokenize"
    build_only = ("base_dir",)

    def __init__(self, path: str, max_length: int = 128, truncation: bool = False,
                 attention_mask: bool = False, add_special_tokens: bool = True,
                 pad_id: int | None = None, allow_empty: bool = False,
                 padding: Literal["max_length", "longest"] = "max_length",
                 base_dir: str | Path | None = None) -> None:
        if not isinstance(path, str) or not path or PurePath(path).is_absolute() or \
                ".." in PurePath(path).parts:
            raise StepConfigError(
                f"must be a file path inside the model's version folder; got {path!r}",
                f"{self.name}.path",
            )
        self.path = path
        self.max_length = _checks.positive_int(self.name, "max_length", max_length)
        self.truncation = _checks.boolean(self.name, "truncation", truncation)
        self.attention_mask = _checks.boolean(self.name, "attention_mask", attention_mask)
        self.add_special_tokens = _checks.boolean(self.name, "add_special_tokens",
                                                  add_special_tokens)
        self.pad_id = None if pad_id is None else _checks.positive_int(
            self.name, "pad_id", pad_id, minimum=0)
        self.allow_empty = _checks.boolean(self.name, "allow_empty", allow_empty)
        self.padding = _checks.choice(self.name, "padding", padding, ("max_length", "longest"))
        self.base_dir = base_dir

    def input_spec(self) -> Spec:
        return ("BYTES", (-1,))

    def output_spec(self, input_spec: Specs) -> Specs:
        _, shape = _text_spec(self.name, input_spec)
        ids: Spec = ("INT64", (shape[0], -1 if self.padding == "longest" else self.max_length))
        return {"input_ids": ids, "attention_mask": ids} if self.attention_mask else ids

    def load(self) -> Tokenize:
        """Read the tokenizer file (once); a missing or bad file is a :class:`StepConfigError`."""
        if getattr(self, "tokenizer_", None) is not None:
            return self
        from tokenizers import Tokenizer

        where = f"{self.name}.path"
        if self.base_dir is None:
            raise StepConfigError(f"{self.path!r} needs the model's version folder (base_dir)",
                                  where)
        file = Path(self.base_dir) / self.path
        if not file.is_file():
            raise StepConfigError(f"no file {str(file)!r}", where)
        try:
            tokenizer = Tokenizer.from_file(str(file))
        except Exception as exc:
            raise StepConfigError(f"{str(file)!r} is not a tokenizers JSON file ({exc})",
                                  where) from exc
        self.pad_id_ = self.pad_id if self.pad_id is not None else _pad_id(tokenizer, file)
        tokenizer.no_padding()  # padding is done here, to max_length, with pad_id_
        if self.truncation:
            tokenizer.enable_truncation(self.max_length)
        else:
            tokenizer.no_truncation()
        self.tokenizer_ = tokenizer
        # the same ids without character offsets (tokenizers >= 0.20): about 25% faster
        self._encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        return self

    def __call__(self, batch: Batch) -> Batch:
        self.load()
        items = texts(self.name, batch)
        if not self.allow_empty:
            for i, text in enumerate(items):
                if not text.strip():
                    raise TransformError(
                        "empty text; send at least one character (or declare "
                        "tokenize.allow_empty: true)", i
                    )
        encodings = self._encode(items, add_special_tokens=self.add_special_tokens)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(items))
        too_long = np.flatnonzero(lengths > self.max_length)
        if too_long.size:
            i = int(too_long[0])
            raise TransformError(
                f"text has {lengths[i]} tokens, more than tokenize.max_length={self.max_length} "
                "(declare tokenize.truncation: true to cut it)", i
            )
        width = self.max_length if self.padding == "max_length" else \
            max(1, int(lengths.max(initial=0)))
        ids = np.full((len(items), width), self.pad_id_, dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : lengths[row]] = encoding.ids
        if not self.attention_mask:
            return ids
        mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
        return {"input_ids": ids, "attention_mask": mask}


def _pad_id(tokenizer: Any, file: Path) -> int:
    padding = tokenizer.padding
    if padding is not None:
        return int(padding["pad_id"])
    for token in _PAD_TOKENS:
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    raise StepConfigError(
        f"{str(file)!r} declares no padding and has no [PAD] or <pad> token; declare pad_id",
        "tokenize.pad_id",
    )
