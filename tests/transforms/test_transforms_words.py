"""The words step: against scikit-learn's stop words and NLTK's stemmers called directly, on
hand-checked SMS strings, the awkward corpus and all 5,574 messages of the SMS spam collection."""

from __future__ import annotations

import csv
import pickle
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, SHARED
from nltk.stem import PorterStemmer, SnowballStemmer
from text_corpus import AWKWARD, awkward_bytes
from transforms_support import batch

from shipyard.transforms import (
    StepConfigError,
    TextNormalize,
    Words,
    apply_steps,
    build_steps,
    steps_output_spec,
    steps_to_config,
)
from shipyard.transforms import words as words_module
from shipyard.transforms._stop_words import ENGLISH_STOP_WORDS

SMS = next((base / "data" / "sms_spam" / "SMSSpamCollection"
            for base in (SHARED, ROOT.parent.parent / "shared")
            if (base / "data" / "sms_spam" / "SMSSpamCollection").is_file()),
           SHARED / "data" / "sms_spam" / "SMSSpamCollection")


def _words(text: str, **params: object) -> str:
    return bytes(Words(**params)(batch(text.encode("utf-8")))[0]).decode("utf-8")  # type: ignore[arg-type]


def _sms() -> list[str]:
    with SMS.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert len(rows) == 5574, f"the SMS spam collection is missing or changed at {SMS}"
    return [text for _, text in rows]


def test_the_stop_words_are_scikit_learns() -> None:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS as SKLEARN

    assert isinstance(ENGLISH_STOP_WORDS, frozenset)
    assert ENGLISH_STOP_WORDS == SKLEARN


def test_default_splits_on_words_and_joins_with_single_spaces() -> None:
    assert _words("  Hello,  how are\tyou?? I'm fine :-)  ") == "Hello how are you I m fine"
    assert _words("Привет, мир! 你好 x_y 2nite") == "Привет мир 你好 x_y 2nite"
    out = Words()(batch(b"a b", "c  d", b""))  # str items too
    assert out.dtype == object and out.tolist() == [b"a b", b"c d", b""]


def test_english_stop_words_are_dropped_case_sensitively() -> None:
    sms = "free entry in a weekly competition to win the cup call me now"
    assert _words(sms, stop_words="english") == "free entry weekly competition win cup"
    # no lower-casing here: declare text_normalize {lowercase: true} first
    assert _words("The Cup", stop_words="english") == "The Cup"
    steps = build_steps([{"text_normalize": {"lowercase": True}},
                         {"words": {"stop_words": "english"}}])
    assert apply_steps(steps, batch(b"The Cup")).tolist() == [b"cup"]
    assert _words("u r gr8 ur u", stop_words=["u", "ur"]) == "r gr8"


def test_porter_and_snowball_stem_like_nltk() -> None:
    sms = "running runs easily fairly was generously"
    assert _words(sms, stemmer="porter") == "run run easili fairli wa gener"
    assert _words(sms, stemmer="snowball") == "run run easili fair was generous"
    assert _words("Häuser Katzen", stemmer="snowball", language="german") == "haus katz"
    assert _words("Running", stemmer="porter") == "run"  # NLTK's stemmers lower-case


def test_min_length_is_checked_on_the_word_before_stemming() -> None:
    assert _words("I am ok with it now", min_length=3) == "with now"
    # 'was' (3 letters) is kept, then stemmed to 'wa'
    assert _words("it was me", min_length=3, stemmer="porter") == "wa"


def test_a_pattern_with_one_group_gives_the_group() -> None:
    assert _words("win #free #prize now", pattern=r"#(\w+)") == "free prize"
    assert _words("call 0800-123 or 07732584351", pattern=r"\d{4,}") == "0800 07732584351"


def test_a_text_of_only_stop_words_is_empty() -> None:
    out = Words(stop_words="english")(batch(b"the a an", b"and so on", b"win"))
    assert out.tolist() == [b"", b"", b"win"]


@pytest.mark.parametrize(("params", "path", "expected"), [
    ({"pattern": "(unclosed"}, "pattern", "is not a valid regular expression"),
    ({"pattern": r"(\w)(\w)"}, "pattern", "has 2 capturing groups, at most one is allowed"),
    ({"pattern": 3}, "pattern", "must be a regular expression (a string); got 3"),
    ({"stop_words": "french"}, "stop_words",
     "must be null, 'english' or a list of non-empty words; got 'french'"),
    ({"stop_words": ["ok", ""]}, "stop_words", "list of non-empty words"),
    ({"stemmer": "lancaster"}, "stemmer",
     "must be one of 'porter', 'snowball', None; got 'lancaster'"),
    ({"stemmer": "porter", "language": "german"}, "language",
     "applies only to stemmer: snowball (stemmer is 'porter'); got 'german'"),
    ({"min_length": 0}, "min_length", "must be an integer >= 1; got 0"),
])
def test_parameters_are_checked_by_name(params: dict[str, object], path: str,
                                        expected: str) -> None:
    with pytest.raises(StepConfigError) as caught:
        build_steps([{"text_normalize": {}}, {"words": params}], load=False)
    assert str(caught.value).startswith(f"preprocess[1].words.{path}: ")
    assert expected in caught.value.reason


def test_the_snowball_language_is_checked_when_the_step_loads() -> None:
    declared = [{"words": {"stemmer": "snowball", "language": "klingon"}}]
    build_steps(declared, load=False)  # not yet
    with pytest.raises(StepConfigError) as caught:
        build_steps(declared)
    assert str(caught.value).startswith("preprocess[0].words.language: must be one of NLTK's "
                                        "snowball languages (arabic, danish, dutch, english")
    assert caught.value.reason.endswith("got 'klingon'")


def test_a_missing_nltk_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nltk", None)
    monkeypatch.setitem(sys.modules, "nltk.stem", None)
    with pytest.raises(StepConfigError) as caught:
        build_steps([{"words": {"stemmer": "porter"}}])
    assert str(caught.value).startswith("preprocess[0].words.stemmer: stemmer 'porter' needs "
                                        "NLTK, which is not installed: pip install nltk")
    assert _words("no stemmer, no nltk") == "no stemmer no nltk"


def test_nltk_is_imported_only_by_a_step_with_a_stemmer() -> None:
    code = (
        "import sys\n"
        "from shipyard.transforms import build_steps, apply_steps\n"
        "import numpy as np\n"
        "steps = build_steps([{'words': {'stop_words': 'english'}}])\n"
        "apply_steps(steps, np.array([b'the cat'], dtype=object))\n"
        "print('nltk' in sys.modules, 'sklearn' in sys.modules)\n"
        "build_steps([{'words': {'stemmer': 'porter'}}])\n"
        "print('nltk' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    assert out == ["False", "False", "True"]


def test_round_trip_spec_and_pickle() -> None:
    declared = [{"words": {"pattern": r"(?u)\b\w\w+\b", "stop_words": ["the", "a"],
                           "stemmer": "snowball", "language": "dutch", "min_length": 2}}]
    steps = build_steps(declared)
    config = steps_to_config(steps)
    assert config == declared
    again = build_steps(config)
    assert again[0].get_params() == steps[0].get_params()
    assert steps_output_spec(steps) == ("BYTES", (-1,))
    items = batch(b"de katten lopen", b"the fietsen")
    out = apply_steps(steps, items)
    assert apply_steps(again, items).tolist() == out.tolist() == [b"de kat lop", b"fiets"]
    thawed = pickle.loads(pickle.dumps(steps[0]))
    assert thawed(items).tolist() == out.tolist()


def test_the_stem_cache_remembers_words_up_to_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    step = Words(stemmer="porter")
    text = "running runs runner running easily runs"
    assert step(batch(text.encode())).tolist() == [b"run run runner run easili run"]
    assert step.stems_ == {"running": "run", "runs": "run", "runner": "runner",
                           "easily": "easili"}
    monkeypatch.setattr(words_module, "STEM_CACHE_SIZE", 2)
    small = Words(stemmer="porter")
    assert small(batch(text.encode())).tolist() == [b"run run runner run easili run"]
    assert len(small.stems_) == 2


STEP_CONFIGS = [
    {},
    {"stop_words": "english", "min_length": 2},
    {"stemmer": "porter"},
    {"stemmer": "snowball", "language": "russian", "stop_words": ["и"]},
    {"pattern": r"\S+", "stemmer": "snowball"},
]


@pytest.mark.parametrize("params", STEP_CONFIGS)
def test_words_takes_every_awkward_text_deterministically(params: dict[str, object]) -> None:
    items = batch(*awkward_bytes())
    first = Words(**params)(items)  # type: ignore[arg-type]
    assert first.tolist() == Words(**params)(items).tolist()  # type: ignore[arg-type]
    step = Words(**params)  # type: ignore[arg-type]
    for name, item, got in zip(AWKWARD, items, first, strict=True):
        assert step(batch(item)).tolist() == [got], name  # independent of the batch and cache
        text = got.decode("utf-8")
        assert "  " not in text and text == text.strip(), name
    assert first[list(AWKWARD).index("empty")] == b""


def test_the_whole_sms_collection_against_nltk_called_directly() -> None:
    messages = _sms()
    normalize = TextNormalize(lowercase=True, html_unescape=True)
    steps = [normalize, Words(stop_words="english", stemmer="porter")]
    out = [bytes(b).decode("utf-8") for b in apply_steps(steps, batch(*messages))]
    unstemmed = [bytes(b).decode("utf-8")
                 for b in apply_steps([normalize, Words(stop_words="english")],
                                      batch(*messages))]
    porter, word = PorterStemmer(), re.compile(r"(?u)\b\w+\b")
    found = removed = 0
    for message, got, plain in zip(messages, out, unstemmed, strict=True):
        words = word.findall(normalize.normalize(message))
        kept = [w for w in words if w not in ENGLISH_STOP_WORDS]
        found, removed = found + len(words), removed + len(words) - len(kept)
        assert plain.split() == kept  # the stop words are gone, the rest in order
        assert got == " ".join(porter.stem(w) for w in kept), message
    assert 0.3 < removed / found < 0.6  # SMS English: a third to a half are stop words
    assert sum(not got for got in out) < 50  # a few messages are only stop words
    english = SnowballStemmer("english")
    snow = Words(stemmer="snowball")(apply_steps([normalize], batch(*messages[:500])))
    for message, got in zip(messages[:500], snow, strict=True):
        expected = [english.stem(w) for w in word.findall(normalize.normalize(message))]
        assert bytes(got).decode("utf-8").split() == expected


def test_a_batch_of_64_sms_is_fast() -> None:
    messages = [m.encode() for m in _sms()[:64 * 20]]
    steps = build_steps([{"text_normalize": {"lowercase": True, "punctuation": True}},
                         {"words": {"stop_words": "english", "stemmer": "porter"}}])
    apply_steps(steps, batch(*messages[:64]))  # warm: the punctuation table, the cache
    started = time.perf_counter()
    for i in range(0, len(messages), 64):
        out = apply_steps(steps, batch(*messages[i:i + 64]))
    per_batch = (time.perf_counter() - started) / 20
    assert isinstance(out, np.ndarray) and len(out) == 64
    assert per_batch < 0.05, f"{per_batch * 1e3:.1f} ms per batch of 64"
