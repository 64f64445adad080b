"""Text steps: normalisation against unicodedata; tokenize against a tokenizer trained here."""

from __future__ import annotations

import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED
from text_corpus import AWKWARD, awkward_bytes
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transforms_support import batch

from shipyard.transforms import (
    StepConfigError,
    TextNormalize,
    Tokenize,
    TransformError,
    apply_steps,
    build_steps,
    steps_to_config,
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


def test_tokenize_padding_longest_pads_to_the_batch_s_longest_text(version_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(version_dir / "tokenizer.json"))
    pad = tokenizer.token_to_id("[PAD]")
    texts = ["the lazy dog", "call me tomorrow morning", "a weekly prize"]
    step = Tokenize(path="tokenizer.json", max_length=40, padding="longest",
                    base_dir=version_dir)
    out = step(batch(*(t.encode() for t in texts)))
    longest = max(len(tokenizer.encode(t).ids) for t in texts)
    assert out.shape == (3, longest) and longest < 40
    fixed = Tokenize(path="tokenizer.json", max_length=40, base_dir=version_dir)(
        batch(*(t.encode() for t in texts)))
    np.testing.assert_array_equal(out, fixed[:, :longest])
    assert (fixed[:, longest:] == pad).all()
    assert step.output_spec(("BYTES", (-1,))) == ("INT64", (-1, -1))
    with pytest.raises(StepConfigError, match=r"tokenize\.padding"):
        Tokenize(path="tokenizer.json", padding="right")


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


# -- text_normalize: html, urls, e-mails, numbers, punctuation, whitespace ----------------------

def _norm(text: str, **params: object) -> str:
    out = TextNormalize(**params)(batch(text.encode("utf-8")))  # type: ignore[arg-type]
    return bytes(out[0]).decode("utf-8")


def test_new_options_are_off_by_default_and_keep_the_old_behaviour() -> None:
    params = TextNormalize().get_params()
    assert params == {"form": "NFKC", "lowercase": False, "strip": True, "html_unescape": False,
                      "urls": "keep", "emails": "keep", "numbers": "keep", "punctuation": False,
                      "collapse_whitespace": False}
    out = TextNormalize()(batch(*awkward_bytes()))
    for text, got in zip(AWKWARD.values(), out, strict=True):
        assert got == unicodedata.normalize("NFKC", text).strip().encode("utf-8")


def test_html_unescape_decodes_entities_before_the_unicode_form() -> None:
    sms = "Tom &amp; Jerry &lt;3 &#39;hi&#39; &quot;ok&quot; &#xFB01;ne &bogus;"
    assert _norm(sms, html_unescape=True) == "Tom & Jerry <3 'hi' \"ok\" fine &bogus;"
    assert _norm(sms, html_unescape=True, form=None).endswith("\ufb01ne &bogus;")
    assert _norm(sms) == sms  # off by default: entities stay


def test_urls_remove_and_mask() -> None:
    sms = ("Visit www.getzed.co.uk. or http://tms.widelive.com/index.wml?id=820&first=true, "
           "HTTPS://EXAMPLE.COM/PATH ok")
    assert _norm(sms, urls="mask") == "Visit  xxurl . or  xxurl ,  xxurl  ok"
    assert _norm(sms, urls="remove", collapse_whitespace=True) == "Visit . or , ok"
    # a bare domain is a URL; an abbreviation, a decimal and an e-mail's domain are not
    assert _norm("see example.com/path, e.g. 3.5 or john@example.com", urls="mask",
                 collapse_whitespace=True) == "see xxurl , e.g. 3.5 or john@example.com"
    assert _norm("example.community is no tld", urls="mask") == "example.community is no tld"


def test_emails_remove_and_mask() -> None:
    sms = "Mail john.smith+sms@example.co.uk or INFO@Shop.Example.com now. Not @home or a@b"
    assert _norm(sms, emails="mask", collapse_whitespace=True) == \
        "Mail xxemail or xxemail now. Not @home or a@b"
    assert _norm(sms, emails="remove", collapse_whitespace=True) == \
        "Mail or now. Not @home or a@b"


def test_numbers_remove_and_mask() -> None:
    sms = "Call 07732584351 now, only £1,000.50 or 3.5p for 2nite"
    assert _norm(sms, numbers="mask", collapse_whitespace=True) == \
        "Call xxnum now, only £ xxnum or xxnum p for xxnum nite"
    assert _norm(sms, numbers="remove", collapse_whitespace=True) == \
        "Call now, only £ or p for nite"


def test_punctuation_goes_symbols_stay() -> None:
    sms = "Hi!!! T&C's apply... £1.50 + 😀 «ok» 你好\uff0c世界 ¿qué?"
    assert _norm(sms, punctuation=True, collapse_whitespace=True) == \
        "Hi T C s apply £1 50 + 😀 ok 你好 世界 qué"
    kept = _norm(sms, punctuation=True)
    assert all(not unicodedata.category(c).startswith("P") for c in kept)
    assert [c for c in kept if unicodedata.category(c).startswith("S")] == ["£", "+", "😀"]


def test_collapse_whitespace() -> None:
    text = " a \t\n b\u3000\u00a0c\r\nd "
    assert _norm(text, collapse_whitespace=True) == "a b c d"
    assert _norm(text, collapse_whitespace=True, strip=False) == " a b c d "
    assert _norm(text, form=None) == "a \t\n b\u3000\u00a0c\r\nd"  # off: inner runs stay


def test_the_order_of_the_operations() -> None:
    # html_unescape before e-mails: the escaped @ makes an address
    assert _norm("john&#64;example.com", html_unescape=True, emails="mask") == "xxemail"
    # the unicode form before urls: full-width www.example.com is a URL only after NFKC
    wide = "".join(chr(ord(c) + 0xFEE0) for c in "www.example.com")
    assert _norm(wide, urls="mask") == "xxurl"
    assert _norm(wide, urls="mask", form=None) == wide
    # urls before numbers: a URL's digits go with it
    assert _norm("http://x.com/820", urls="mask", numbers="mask") == "xxurl"
    # e-mails before punctuation, numbers before punctuation; masks survive lowercase and
    # punctuation; collapse before strip
    everything = {"html_unescape": True, "urls": "mask", "emails": "mask", "numbers": "mask",
                  "lowercase": True, "punctuation": True, "collapse_whitespace": True}
    assert _norm("WIN £1,000.50!!! Mail WIN@Prize.com &amp; go to WWW.PRIZE.CO.UK/win now",
                 **everything) == "win £ xxnum mail xxemail go to xxurl now"
    assert _norm("a@b.com", punctuation=True) == "a b com"


def test_all_options_round_trip_through_the_declarative_form() -> None:
    declared = [{"text_normalize": {"html_unescape": True, "form": "NFC", "urls": "remove",
                                    "emails": "mask", "numbers": "mask", "lowercase": True,
                                    "punctuation": True, "collapse_whitespace": True,
                                    "strip": False}}]
    steps = build_steps(declared)
    config = steps_to_config(steps)
    assert config == declared
    again = build_steps(config)
    assert again[0].get_params() == steps[0].get_params()
    items = batch(*awkward_bytes())
    assert apply_steps(again, items).tolist() == apply_steps(steps, items).tolist()


@pytest.mark.parametrize(("param", "value", "expected"), [
    ("urls", "drop", "must be one of 'keep', 'remove', 'mask'; got 'drop'"),
    ("emails", True, "must be one of 'keep', 'remove', 'mask'; got True"),
    ("numbers", None, "must be one of 'keep', 'remove', 'mask'; got None"),
    ("html_unescape", "yes", "must be true or false; got 'yes'"),
    ("punctuation", 1, "must be true or false; got 1"),
    ("collapse_whitespace", None, "must be true or false; got None"),
])
def test_new_parameters_are_checked_by_name(param: str, value: object, expected: str) -> None:
    with pytest.raises(StepConfigError) as caught:
        build_steps([{"text_normalize": {param: value}}])
    assert str(caught.value) == f"preprocess[0].text_normalize.{param}: {expected}"


# -- the awkward corpus ---------------------------------------------------------------------------

CONFIGS = [
    {},
    {"form": None, "strip": False},
    {"form": "NFD", "lowercase": True},
    {"html_unescape": True, "urls": "mask", "emails": "mask", "numbers": "mask",
     "lowercase": True, "punctuation": True, "collapse_whitespace": True},
    {"urls": "remove", "emails": "remove", "numbers": "remove", "punctuation": True},
]


@pytest.mark.parametrize("params", CONFIGS)
def test_text_normalize_takes_every_awkward_text_deterministically(
        params: dict[str, object]) -> None:
    items = batch(*awkward_bytes())
    first = TextNormalize(**params)(items)  # type: ignore[arg-type]
    again = TextNormalize(**params)(items)  # type: ignore[arg-type]
    assert first.tolist() == again.tolist()
    step = TextNormalize(**params)  # type: ignore[arg-type]
    for name, item, got in zip(AWKWARD, items, first, strict=True):
        assert step(batch(item)).tolist() == [got], name  # independent of the batch
        got.decode("utf-8")
    if params.get("collapse_whitespace"):
        assert all(b"  " not in got and b"\t" not in got for got in first)


def test_patterns_take_long_adversarial_texts_quickly() -> None:
    hostile = "a." * 20_000 + "a-" * 20_000 + "x@" + "b." * 20_000 + "1," * 20_000 + "@" * 5_000
    step = TextNormalize(urls="mask", emails="mask", numbers="mask", punctuation=True)
    started = time.perf_counter()
    out = step(batch(hostile.encode()))
    assert time.perf_counter() - started < 5.0  # backtracking blow-ups take minutes
    assert b"xxnum" in out[0]


def test_tokenize_takes_every_awkward_text_or_refuses_as_documented(version_dir: Path) -> None:
    lenient = Tokenize(path="tokenizer.json", max_length=16, truncation=True, allow_empty=True,
                       base_dir=version_dir)
    items = batch(*awkward_bytes())
    out = lenient(items)
    assert out.shape == (len(AWKWARD), 16) and out.tolist() == lenient(items).tolist()
    strict = Tokenize(path="tokenizer.json", max_length=16, base_dir=version_dir)
    refused: dict[str, str] = {}
    for name, item in zip(AWKWARD, items, strict=True):
        try:
            strict(batch(item))
        except TransformError as exc:
            refused[name] = "empty" if "empty text" in exc.reason else "long"
    assert {n for n, why in refused.items() if why == "empty"} == {"empty", "whitespace_only"}
    assert {"very_long", "html", "urls"} <= {n for n, why in refused.items() if why == "long"}


def test_the_url_hint_never_skips_a_url() -> None:
    """Texts without URL_HINT skip URL_REGEX: every text the full pattern would change must
    contain the hint (all SMS messages, the awkward corpus, and URL-like strings)."""
    from text_corpus import AWKWARD

    from shipyard.transforms._text_rules import URL_HINT, URL_REGEX

    sms = SHARED / "data" / "sms_spam" / "SMSSpamCollection"
    texts = [*AWKWARD.values(), "see WWW.X.ORG", "ftp://host/a", "a.b.CO.UK/x", "x.io!",
             *(line.split("\t", 1)[-1] for line in sms.read_text(encoding="utf-8").splitlines())]
    for text in texts:
        if URL_REGEX.search(text):
            assert URL_HINT.search(text), text
    assert sum(bool(URL_REGEX.search(t)) for t in texts) > 50
