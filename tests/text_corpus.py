"""Awkward texts every text step must take (``from text_corpus import AWKWARD``).

``AWKWARD`` maps a short name (a readable pytest id) to a ``str``; every text is valid Unicode
that encodes to UTF-8 (invalid bytes are tested on their own). Steps may refuse some items only
where they document it (``tokenize``: an empty text, or one longer than ``max_length`` tokens).
"""

from __future__ import annotations

__all__ = ["AWKWARD", "awkward_bytes"]

_SENTENCE = "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005! "

AWKWARD: dict[str, str] = {
    "empty": "",
    "whitespace_only": " \t\n\r\u00a0\u2003\u3000 ",
    "emoji": "WINNER!! 🎉🎉 U have won £1000 😀👍🏽 call now 📞 👨\u200d👩\u200d👧",
    "precomposed_accents": "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e na\u00efve",
    "combining_accents": "Cafe\u0301 cre\u0300me bru\u0302le\u0301e nai\u0308ve",
    "stacked_combining": "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319a\u0335lgo",
    "compatibility": "\uff26\uff32\uff25\uff25 \ufb01nal \u2460\u2461 \u210cello \u00bd x\u00b2",
    "very_long": _SENTENCE * 200,  # 13,600 characters
    "long_word": "a" * 12_000,
    "html": ("<p>Hi &amp; welcome &lt;b&gt;John&lt;/b&gt;!</p> &#39;quoted&#39; &quot;q&quot; "
             "&nbsp;&eacute;t&eacute; &#x1F600; &bogus; <a href='http://x.co/a?b=1&amp;c=2'>x</a>"),
    "latin": "Hello, how are you? I'm fine -- thanks!",
    "cyrillic": "Привет, как дела? Звони 8-800-555-35-35",
    "cjk": "你好\uff0c世界\uff01今天天气很好。東京都 こんにちは 안녕하세요",
    "arabic": "مرحبا بالعالم، كيف حالك؟ ١٢٣",
    "devanagari": "नमस्ते दुनिया। आप कैसे हैं? १२३४",
    "mixed_scripts": "Hi Привет 你好 مرحبا नमस्ते 123 ok",
    "zero_width": "zero\u200bwidth\u200cnon\u200djoiner\u2060word\ufeffbom",
    "rtl_marks": ("\u202b\u0634\u0643\u0631\u0627\u202c and \u200fright\u200e-to-left "
                  "\u2067isolate\u2069"),
    "tabs_newlines": "line one\tcol\nline two\r\nline three\rend\x0bvt\x0cff\u2028ls\u2029ps",
    "urls": ("Visit www.getzed.co.uk. or http://tms.widelive.com/index.wml?id=820&first=true, "
             "HTTPS://EXAMPLE.COM/PATH or example.org/a/b!"),
    "emails": "Mail john.smith+sms@example.co.uk or INFO@Shop.Example.com now",
    "phone_numbers": "Call 07732584351 or +44 (0)20 7946 0958 or 0800-123-4567, £1,000.50 ok",
    "nul": "before\x00after\x00",
    "control_chars": "bell\x07 esc\x1b[0m del\x7f c1\x85\x9f",
    "punctuation_only": "!!! ... ??? --- «» “” ¿¡ 、。",
    "symbols_only": "£ $ € + = < > © ® ™ ° ± 😀",
    "private_use_and_noncharacters": "\ue000\uf8ff\U000f0000 \ufdd0 \uffff",
    "astral": "\U0001d400\U0001d401 \U00020000 \U0001f9ea",
    "digits_everywhere": "bro3.5.3 mp3 2nite 4u 1st",
}


def awkward_bytes() -> list[bytes]:
    """Every text of :data:`AWKWARD`, UTF-8 encoded, in its order."""
    return [text.encode("utf-8") for text in AWKWARD.values()]
