"""The rules of ``text_normalize``: what a URL, an e-mail address and a number are, the masks
they become, and the table of Unicode punctuation. One copy, used by training and serving alike.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from typing import Literal, TypeAlias

__all__ = [
    "EMAIL_PATTERN",
    "MASKS",
    "NUMBER_PATTERN",
    "URL_PATTERN",
    "Replace",
    "punctuation_table",
]

#: What ``text_normalize`` does with a URL, an e-mail address or a number.
Replace: TypeAlias = Literal["keep", "remove", "mask"]
REPLACE_MODES = ("keep", "remove", "mask")
#: The token a masked match becomes (padded with spaces): lower-case letters only, so that
#: ``lowercase`` and ``punctuation`` leave it as it is (fastai's ``xx`` convention).
MASKS = {"urls": "xxurl", "emails": "xxemail", "numbers": "xxnum"}

# A URL ends before trailing punctuation: "see www.x.com." keeps the full stop.
_URL_TAIL = r"""[^\s<>"']*[^\s<>"'.,;:!?)\]}]"""
_LABEL = r"[^\W_](?:[\w-]*[^\W_])?"  # a domain label: letters/digits, inner hyphens
_TLDS = ("com|net|org|edu|gov|mil|int|info|biz|io|co|me|tv|ly|app|dev|ai|xyz|online|site|uk|"
         "us|ca|au|nz|ie|de|fr|nl|be|ch|at|es|it|pt|se|no|dk|fi|pl|ru|in|jp|cn|kr|sg|eu")
#: URLs: ``http(s)://...``, ``www....`` and bare domains with a common top-level domain
#: (``example.com/path``, ``getzed.co.uk``), case-insensitive. A domain right after ``@`` or
#: inside a word is not a URL (so ``urls`` leaves e-mail addresses to ``emails``).
URL_PATTERN = (
    rf"https?://{_URL_TAIL}"
    rf"|(?<![\w@.-])(?:www\.{_URL_TAIL}"
    rf"|(?:{_LABEL}\.)+(?:{_TLDS})(?![\w@-])(?:/(?:{_URL_TAIL})?)?)"
)
#: E-mail addresses: ``local@domain.tld`` (local part: word characters and ``. % + -``).
EMAIL_PATTERN = rf"(?<![\w.%+-])[\w.%+-]+@(?:{_LABEL}\.)+[^\W\d_]{{2,}}(?![\w-])"
#: Numbers: runs of (Unicode) digits with inner ``.``/``,`` separators: ``1,000.50``,
#: ``07732584351``, ``3.5``; digits inside a word count too (``mp3`` -> ``mp xxnum``).
NUMBER_PATTERN = r"\d+(?:[.,]\d+)*"
URL_REGEX = re.compile(URL_PATTERN, re.IGNORECASE)
#: what every URL_PATTERN match contains; texts without it skip the full pattern (5 us a text)
URL_HINT = re.compile(rf"://|www\.|\.(?:{_TLDS})(?![\w@-])", re.IGNORECASE)
EMAIL_REGEX = re.compile(EMAIL_PATTERN)
NUMBER_REGEX = re.compile(NUMBER_PATTERN)
WHITESPACE_REGEX = re.compile(r"\s+")


@functools.cache
def punctuation_table() -> dict[int, str]:
    """Every Unicode punctuation code point (category ``P*``) -> a space; built on first use."""
    return {c: " " for c in range(sys.maxunicode + 1)
            if unicodedata.category(chr(c)).startswith("P")}
