"""Text steps: normalisation against unicodedata; tokenize against a tokenizer trained here."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transforms_support import batch

from shipyard.transforms import (
    StepConfigError,
    TextNormalize,
    Tokenize,
    TransformError,
    apply_steps,
    build_steps,
)

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a model server answers requests with predictions",
    "free entry in a weekly competition to win prizes",
    "are you coming to the meeting tomorrow morning",
    "call me when you get home from the station",
]
# [PAD] is not id 0 on purpose, so that padding with the wrong id is seen
SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]"]


def _train(path: Path, specials: list[str] = SPECIALS) -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        SENTENCES, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials)
    )
    if "[CLS]" in specials:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")),
                            ("[SEP]", tokenizer.token_to_id("[SEP]"))],
        )
    tokenizer.save(str(path))
    return tokenizer


@pytest.fixture
def version_dir(tmp_path: Path) -> Path:
    _train(tmp_path / "tokenizer.json")
    return tmp_path


def _reference(tokenizer: Tokenizer, text: str, length: int, pad: int) -> list[int]:
    ids = tokenizer.encode(text).ids
    assert len(ids) <= length
    return ids + [pad] * (length - len(ids))


# -- text_normalize ------------------------------------------------------------------------------

# full-width ABC, the fi ligature, a combining accent, black-letter H, a circled 1
TEXTS = ["  \uff21\uff22\uff23 \ufb01ne  ", "Café\u0301 ", "\tStraße\n", "\u210cello \u2460"]


@pytest.mark.parametrize("form", ["NFKC", "NFC", "NFKD", "NFD", None])
def test_text_normalize_matches_unicodedata(form: str | None) -> None:
    out = TextNormalize(form=form, lowercase=True)(batch(*(t.encode() for t in TEXTS)))  # type: ignore[arg-type]
    assert out.dtype == object and out.shape == (len(TEXTS),)
    for text, got in zip(TEXTS, out, strict=True):
        expected = (unicodedata.normalize(form, text) if form else text).lower().strip()
        assert got == expected.encode("utf-8")


def test_text_normalize_defaults_nfkc_strip_keep_case() -> None:
    out = TextNormalize()(np.array(["  \uff21\uff22\uff23 \ufb01  "]))  # str items too
    assert out.tolist() == [b"ABC fi"]
    assert TextNormalize(strip=False)(batch(b" a ")).tolist() == [b" a "]


def test_invalid_utf8_is_refused_by_index() -> None:
    with pytest.raises(TransformError) as caught:
        TextNormalize()(batch(b"fine", b"also fine", b"caf\xe9 latin-1"))
    assert caught.value.index == 2
    assert str(caught.value) == "item 2: not valid UTF-8 (invalid continuation byte at byte 3)"
    with pytest.raises(TransformError) as caught:
        TextNormalize()(batch(b"ok", 12))
    assert caught.value.index == 1 and "expected text (UTF-8 bytes), got int" in str(caught.value)


# -- tokenize -------------------------------------------------------------------------------------

def test_tokenize_pads_to_max_length_with_the_pad_id(version_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(version_dir / "tokenizer.json"))
    pad = tokenizer.token_to_id("[PAD]")
    texts = ["the lazy dog", "call me tomorrow morning", "a weekly prize"]
    step = Tokenize(path="tokenizer.json", max_length=12, base_dir=version_dir)
    out = step(batch(*(t.encode() for t in texts)))
    assert out.dtype == np.int64 and out.shape == (3, 12)
    for row, text in zip(out, texts, strict=True):
        assert row.tolist() == _reference(tokenizer, text, 12, pad)
    assert out[0, 0] == tokenizer.token_to_id("[CLS]") and pad == 3


def test_tokenize_attention_mask_marks_the_tokens(version_dir: Path) -> None:
    step = Tokenize(path="tokenizer.json", max_length=10, attention_mask=True,
                    base_dir=version_dir)
    out = step(batch(b"the dog", b"are you coming to the meeting"))
    assert isinstance(out, dict) and set(out) == {"input_ids", "attention_mask"}
    lengths = (out["input_ids"] != 3).sum(axis=1)
    expected = (np.arange(10) < lengths[:, None]).astype(np.int64)
    np.testing.assert_array_equal(out["attention_mask"], expected)
    assert out["attention_mask"].dtype == np.int64 and lengths.tolist() != [10, 10]
    assert step.output_spec(("BYTES", (-1,))) == {"input_ids": ("INT64", (-1, 10)),
                                                  "attention_mask": ("INT64", (-1, 10))}


def test_tokenize_refuses_a_long_text_by_default(version_dir: Path) -> None:
    step = Tokenize(path="tokenizer.json", max_length=6, base_dir=version_dir)
    with pytest.raises(TransformError) as caught:
        step(batch(b"the dog", b"the quick brown fox jumps over the lazy dog", b"a"))
    assert caught.value.index == 1
    assert "more than tokenize.max_length=6 (declare tokenize.truncation: true" in \
        str(caught.value)


def test_tokenize_truncation_keeps_the_special_tokens(version_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(version_dir / "tokenizer.json"))
    long = "the quick brown fox jumps over the lazy dog"
    out = Tokenize(path="tokenizer.json", max_length=6, truncation=True,
                   base_dir=version_dir)(batch(long.encode()))
    full = tokenizer.encode(long).ids
    assert len(full) > 6
    assert out[0].tolist() == [*full[:5], tokenizer.token_to_id("[SEP]")]


def test_tokenize_refuses_empty_text_unless_allowed(version_dir: Path) -> None:
    steps = build_steps([{"text_normalize": {}},
                         {"tokenize": {"path": "tokenizer.json", "max_length": 4}}],
                        base_dir=version_dir)
    with pytest.raises(TransformError) as caught:
        apply_steps(steps, batch(b"dog", b"  \t "))
    assert caught.value.index == 1 and "empty text" in str(caught.value)
    allowed = Tokenize(path="tokenizer.json", max_length=4, allow_empty=True,
                       base_dir=version_dir)
    assert allowed(batch(b"")).tolist() == [[1, 2, 3, 3]]  # [CLS] [SEP] [PAD] [PAD]


def test_tokenize_refuses_invalid_utf8(version_dir: Path) -> None:
    step = Tokenize(path="tokenizer.json", max_length=8, base_dir=version_dir)
    with pytest.raises(TransformError) as caught:
        step(batch(b"the dog", b"\xff\xfe"))
    assert caught.value.index == 1 and "not valid UTF-8" in str(caught.value)


def test_tokenize_files_are_checked_when_the_pipeline_is_built(tmp_path: Path) -> None:
    def refused(declared: dict[str, object]) -> str:
        with pytest.raises(StepConfigError) as caught:
            build_steps([{"text_normalize": None}, {"tokenize": declared}], base_dir=tmp_path)
        return str(caught.value)

    assert refused({"path": "tokenizer.json"}).startswith(
        "preprocess[1].tokenize.path: no file ")
    assert refused({"path": "/etc/tokenizer.json"}) == (
        "preprocess[1].tokenize.path: must be a file path inside the model's version folder; "
        "got '/etc/tokenizer.json'")
    assert "inside the model's version folder" in refused({"path": "../tokenizer.json"})
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    assert "is not a tokenizers JSON file" in refused({"path": "broken.json"})
    _train(tmp_path / "nopad.json", specials=["[UNK]"])
    assert refused({"path": "nopad.json"}).startswith(
        "preprocess[1].tokenize.pad_id: ")
    ok = build_steps([{"tokenize": {"path": "nopad.json", "pad_id": 0, "max_length": 3}}],
                     base_dir=tmp_path)
    assert ok[0](batch(b"dog")).shape == (1, 3)


def test_tokenize_parameters_are_checked_by_name() -> None:
    with pytest.raises(StepConfigError, match=r"^tokenize\.truncation: must be true or false"):
        Tokenize(path="t.json", truncation="yes")  # type: ignore[arg-type]
    with pytest.raises(StepConfigError, match=r"^tokenize\.max_length: must be an integer >= 1"):
        Tokenize(path="t.json", max_length=0)
    with pytest.raises(StepConfigError, match=r"^text_normalize\.form: must be one of"):
        TextNormalize(form="NFX")  # type: ignore[arg-type]
