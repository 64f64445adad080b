"""Train a subword tokenizer (WordPiece or byte-level BPE) on the training texts.

:func:`train_tokenizer` returns a :class:`tokenizers.Tokenizer` whose ``save(path)`` file is
what the ``tokenize`` transform (:class:`shipyard.transforms.Tokenize`) loads at serving time:
every encoding is ``[CLS] tokens [SEP]``, and ``[PAD]`` is id 0 (the pad id ``tokenize`` pads
with; it never appears in the encoding of a text).

The texts are expected to be normalised already by the experiment's preprocessing chain
(``text_normalize``: Unicode form, lower-casing, stripping), which runs both before training and
before ``tokenize`` when serving; so the tokenizer has no normalizer of its own (a second one
would make training and serving disagree whenever the chain changes).

Kinds:

- ``wordpiece``: BERT's pre-tokenizer (split on whitespace and on every punctuation
  character), ``##`` continuation pieces; a word the vocabulary cannot spell becomes
  ``[UNK]``, and so does a character that never occurred in the training texts.
- ``bpe``: byte-level BPE (GPT-2's scheme: the 256 bytes are the alphabet, so no text is ever
  unknown; spaces are kept as ``Ġ``), the kind onnxruntime-extensions can put inside an ONNX
  graph.

Training is deterministic: the same texts in the same order give a byte-identical
``tokenizer.json``. A ``vocab_size`` larger than the texts can fill is allowed: the vocabulary
then simply stops growing when no pair occurs ``min_frequency`` times (``get_vocab_size()``
says how large it became).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from shipyard.errors import ConfigError

if TYPE_CHECKING:
    import tokenizers

__all__ = ["CLS_TOKEN", "PAD_TOKEN", "SEP_TOKEN", "SPECIAL_TOKENS", "UNK_TOKEN",
           "train_tokenizer"]

PAD_TOKEN = "[PAD]"
"""The padding token: id 0."""
UNK_TOKEN = "[UNK]"
"""What WordPiece makes of a word it cannot spell (byte-level BPE never needs it)."""
CLS_TOKEN = "[CLS]"
"""First token of every encoding (what ``pooling: cls`` reads)."""
SEP_TOKEN = "[SEP]"
"""Last token of every encoding."""
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN)
"""The special tokens, in id order: ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3."""

Kind = Literal["wordpiece", "bpe"]
_KINDS = ("wordpiece", "bpe")
_BYTES = 256
_PRIVATE_USE = 0xF0000


def _continuation_chars(alphabet: list[str]) -> dict[str, str]:
    """A private stand-in for each character of ``alphabet`` when it continues a word (the
    ``##c`` piece): code points of Supplementary Private Use Area-A that the texts do not use."""
    used = set(alphabet)
    candidates = (chr(c) for c in range(_PRIVATE_USE, 0x10FFFE) if chr(c) not in used)
    return dict(zip(alphabet, candidates, strict=False))


def _words(texts: list[str]) -> list[str]:
    """The words of the texts as BERT's pre-tokenizer splits them."""
    from tokenizers import pre_tokenizers

    bert = pre_tokenizers.BertPreTokenizer()
    return [w for text in texts for w, _ in bert.pre_tokenize_str(text)]


def _train_wordpiece(words: list[str], alphabet: list[str], vocab_size: int,
                     min_frequency: int) -> tokenizers.Tokenizer:
    """WordPiece the way ``tokenizers`` trains it (BPE merges over ``##``-continued pieces,
    then the merged pieces as the WordPiece vocabulary), but deterministic.

    ``tokenizers.trainers.WordPieceTrainer`` is not: it numbers the ``##c`` pieces in hash-map
    order, and merges of equal count are then chosen by those numbers, so two runs on the
    same texts give different vocabularies (huggingface/tokenizers#1794, seen here with
    tokenizers 0.23 on the SMS texts: 66 of 8000 tokens differed). Here every character ``c``
    that continues a word is spelt as a private stand-in character before the BPE trainer
    sees the words (a plain BPE over a sorted alphabet is deterministic), and the learnt
    pieces are spelt back: ``h`` + stand-ins -> ``h...``, stand-ins only -> ``##...``. Every
    character of the texts is in the vocabulary both as a word start and as ``##c``, so only
    a word with a character never seen in training becomes ``[UNK]``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    cont = _continuation_chars(alphabet)
    back = {v: k for k, v in cont.items()}
    spelt = [w[0] + "".join(cont[c] for c in w[1:]) for w in words]
    bpe = Tokenizer(models.BPE())  # no pre-tokenizer: each item is one word
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=[*alphabet, *cont.values()], show_progress=False)
    bpe.train_from_iterator(spelt, trainer=trainer, length=len(spelt))
    vocab: dict[str, int] = {}
    for piece, index in sorted(bpe.get_vocab(with_added_tokens=True).items(),
                               key=lambda item: item[1]):
        if index >= len(SPECIAL_TOKENS):
            piece = ("##" + "".join(back[c] for c in piece) if piece[0] in back
                     else piece[0] + "".join(back[c] for c in piece[1:]))
        vocab[piece] = index
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=UNK_TOKEN,
                                           continuing_subword_prefix="##"))
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _check(kind: object, vocab_size: object, min_frequency: object) -> None:
    if kind not in _KINDS:
        raise ConfigError(f"tokenizer.kind must be one of {list(_KINDS)}, got {kind!r}")
    for name, value in (("vocab_size", vocab_size), ("min_frequency", min_frequency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"tokenizer.{name} must be an integer >= 1, got {value!r}")


def train_tokenizer(texts: Iterable[str], *, kind: Kind = "wordpiece", vocab_size: int = 8000,
                    min_frequency: int = 2) -> tokenizers.Tokenizer:
    """A ``kind`` tokenizer of at most ``vocab_size`` tokens (the four
    :data:`SPECIAL_TOKENS` and the alphabet included) learnt from ``texts`` (already
    normalised); a piece joins the vocabulary only if it occurs at least ``min_frequency``
    times. Deterministic: the same texts give the same tokenizer.

    Raises :class:`ConfigError` (naming ``tokenizer.vocab_size``) when ``vocab_size`` cannot
    hold the special tokens and the alphabet: for ``bpe`` the 256 bytes, for ``wordpiece``
    every distinct character of the texts' words twice (``c`` and ``##c``); the trainer would
    otherwise silently return a larger vocabulary than asked for. :class:`ConfigError` too
    for no texts, a non-string text, or a bad ``kind`` / ``min_frequency``."""
    _check(kind, vocab_size, min_frequency)
    items = list(texts)
    bad = next((i for i, t in enumerate(items) if not isinstance(t, str)), None)
    if bad is not None:
        raise ConfigError(f"train_tokenizer texts[{bad}] must be a str, got "
                          f"{type(items[bad]).__name__}; decode the texts first")
    if not any(t.strip() for t in items):
        raise ConfigError("train_tokenizer got no text to learn from; pass the training texts")

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = list(SPECIAL_TOKENS)
    if kind == "bpe":
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        need = len(specials) + _BYTES
        what = "the 256 bytes of byte-level BPE"
    else:
        words = _words(items)
        chars = sorted(set("".join(words)))
        need = len(specials) + 2 * len(chars)
        what = (f"the {len(chars)} distinct characters of the texts, each as a word start "
                "and as a ##continuation")
    if vocab_size < need:
        raise ConfigError(
            f"tokenizer.vocab_size={vocab_size} cannot hold the {len(specials)} special tokens "
            f"and {what}; use at least {need} (a few thousand is typical)")

    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                            use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
            initial_alphabet=alphabet, show_progress=False)
        tokenizer.train_from_iterator(items, trainer=trainer, length=len(items))
    else:
        tokenizer = _train_wordpiece(words, chars, vocab_size, min_frequency)
    ids = [tokenizer.token_to_id(t) for t in specials]
    if ids != list(range(len(specials))):  # the trainer puts them first, in order
        raise AssertionError(f"special token ids {ids}, expected 0..{len(specials) - 1}")
    cls, sep = ids[2], ids[3]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS_TOKEN} $A {SEP_TOKEN}",
        pair=f"{CLS_TOKEN} $A {SEP_TOKEN} $B:1 {SEP_TOKEN}:1",
        special_tokens=[(CLS_TOKEN, cls), (SEP_TOKEN, sep)])
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer
