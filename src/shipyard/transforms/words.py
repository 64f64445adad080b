"""``words``: BYTES texts -> the same texts as words, stop words dropped, stems, single spaces."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, Literal

from shipyard.transforms import _checks
from shipyard.transforms._stop_words import ENGLISH_STOP_WORDS
from shipyard.transforms.base import Batch, Spec, Specs, Step
from shipyard.transforms.errors import StepConfigError
from shipyard.transforms.text import _bytes_array, _text_spec, texts

__all__ = ["DEFAULT_PATTERN", "STEM_CACHE_SIZE", "Words"]

#: scikit-learn's default ``token_pattern`` made to take one-letter words: ``\b\w+\b``.
DEFAULT_PATTERN = r"(?u)\b\w+\b"
#: The most words a step remembers the stem of; later new words are stemmed every time, so
#: a stream of never-seen words cannot grow a server's memory without bound.
STEM_CACHE_SIZE = 100_000
_STEMMERS = ("porter", "snowball", None)


class Words(Step):
    """Split every text into words, drop short words and stop words, stem, join with spaces.

    Parameters:
        pattern: the regular expression of one word (Python ``re``); default
            :data:`DEFAULT_PATTERN`, ``(?u)\\b\\w+\\b``. With one capturing group the group is
            the word (as in scikit-learn's ``token_pattern``); more than one is refused.
        stop_words: ``null`` (default, none dropped), ``"english"`` (scikit-learn's
            ``ENGLISH_STOP_WORDS``, lower-case) or a list of words. They match exactly and
            case-sensitively, so declare ``text_normalize: {lowercase: true}`` before this step.
        stemmer: ``null`` (default: words as they are), ``"porter"`` (NLTK's
            ``PorterStemmer``) or ``"snowball"`` (NLTK's ``SnowballStemmer``). NLTK's stemmers
            lower-case what they return. Needs ``nltk`` (``pip install nltk``).
        language: the snowball stemmer's language (one of NLTK's
            ``SnowballStemmer.languages``, checked when the step loads); default
            ``"english"``. Only ``stemmer: snowball`` has languages.
        min_length: words shorter than this (in characters, as found in the text, before
            stop words and stemming) are dropped; default ``1``.

    Per word, in order: find it (``pattern``), drop it if shorter than ``min_length``, drop it
    if a stop word, stem it. A text with no word left becomes the empty string (``tokenize``
    refuses it unless ``allow_empty``). Stems are cached per step (up to
    :data:`STEM_CACHE_SIZE` words), since words repeat a lot.
    """

    name = "words"

    def __init__(self, pattern: str = DEFAULT_PATTERN,
                 stop_words: Literal["english"] | list[str] | None = None,
                 stemmer: Literal["porter", "snowball"] | None = None,
                 language: str = "english", min_length: int = 1) -> None:
        self.pattern = pattern
        self.regex_ = _compile(self.name, pattern)
        self.stop_words = _stop_words(self.name, stop_words)
        self.stop_words_: frozenset[str] = (
            frozenset() if self.stop_words is None
            else ENGLISH_STOP_WORDS if self.stop_words == "english"
            else frozenset(self.stop_words)
        )
        self.stemmer: Literal["porter", "snowball"] | None = _checks.choice(
            self.name, "stemmer", stemmer, _STEMMERS)
        if not isinstance(language, str) or not language:
            raise StepConfigError(f"must be a language name such as 'english'; got {language!r}",
                                  f"{self.name}.language")
        if language != "english" and self.stemmer != "snowball":
            raise StepConfigError(
                f"applies only to stemmer: snowball (stemmer is {self.stemmer!r}); got "
                f"{language!r}: declare stemmer: snowball or leave language out",
                f"{self.name}.language")
        self.language = language
        self.min_length = _checks.positive_int(self.name, "min_length", min_length)

    def input_spec(self) -> Spec:
        return ("BYTES", (-1,))

    def output_spec(self, input_spec: Specs) -> Specs:
        return _text_spec(self.name, input_spec)

    def load(self) -> Words:
        """Make the stemmer (importing NLTK) once; a missing NLTK or an unknown snowball
        language is a :class:`StepConfigError`. Without a stemmer there is nothing to load."""
        if self.stemmer is None or getattr(self, "stem_", None) is not None:
            return self
        try:
            from nltk.stem import PorterStemmer, SnowballStemmer
        except ImportError as exc:
            raise StepConfigError(
                f"stemmer {self.stemmer!r} needs NLTK, which is not installed: pip install nltk "
                "(it is in shipyard[serve] and shipyard[train])", f"{self.name}.stemmer"
            ) from exc
        if self.stemmer == "porter":
            stem: Callable[[str], str] = PorterStemmer().stem
        else:
            languages = tuple(SnowballStemmer.languages)
            if self.language not in languages:
                raise StepConfigError(
                    f"must be one of NLTK's snowball languages ({', '.join(languages)}); "
                    f"got {self.language!r}", f"{self.name}.language")
            stem = SnowballStemmer(self.language).stem
        self.stems_: dict[str, str] = {}
        # some of NLTK's stemmers (arabic) keep state on the instance while they stem
        self.lock_ = threading.Lock()
        self.stem_ = stem
        return self

    def words(self, text: str) -> str:
        """One text as its kept words (stemmed), joined by single spaces."""
        stops, shortest = self.stop_words_, self.min_length
        found = [w for w in self.regex_.findall(text)
                 if len(w) >= shortest and w not in stops]
        if self.stemmer is None:
            return " ".join(found)
        stems = self.stems_
        out = []
        for word in found:
            stemmed = stems.get(word)
            if stemmed is None:
                with self.lock_:
                    stemmed = self.stem_(word)
                if len(stems) < STEM_CACHE_SIZE:
                    stems[word] = stemmed
            out.append(stemmed)
        return " ".join(out)

    def __call__(self, batch: Batch) -> Batch:
        self.load()
        return _bytes_array([self.words(t).encode("utf-8") for t in texts(self.name, batch)])

    def __getstate__(self) -> dict[str, Any]:
        # the stemmer, its cache and its lock are made again by load() after unpickling
        return {k: v for k, v in self.__dict__.items() if k not in ("stem_", "stems_", "lock_")}


def _compile(step: str, pattern: Any) -> re.Pattern[str]:
    where = f"{step}.pattern"
    if not isinstance(pattern, str) or not pattern:
        raise StepConfigError(f"must be a regular expression (a string); got {pattern!r}", where)
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise StepConfigError(f"is not a valid regular expression ({exc}); got {pattern!r}",
                              where) from None
    if regex.groups > 1:
        raise StepConfigError(
            f"has {regex.groups} capturing groups, at most one is allowed (use (?:...) for the "
            f"others); got {pattern!r}", where)
    return regex


def _stop_words(step: str, value: Any) -> Literal["english"] | tuple[str, ...] | None:
    if value is None or value == "english":
        return value  # type: ignore[no-any-return]
    if isinstance(value, list | tuple) and all(isinstance(w, str) and w for w in value):
        return tuple(value)
    raise StepConfigError(
        f"must be null, 'english' or a list of non-empty words; got {value!r}",
        f"{step}.stop_words")
