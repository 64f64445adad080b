"""train_tokenizer on real SMS messages: special tokens, the tokenize transform loading its file,
determinism, byte-level BPE's missing unknowns, and the vocab_size checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SHARED

from shipyard.data.text_tokenizer import SPECIAL_TOKENS, train_tokenizer
from shipyard.errors import ConfigError
from shipyard.transforms import Tokenize

SMS = SHARED / "data" / "sms_spam" / "SMSSpamCollection"
KINDS = ["wordpiece", "bpe"]


def sms(n: int = 400, start: int = 0) -> list[str]:
    """``n`` SMS texts (the label column dropped), stripped like text_normalize does."""
    lines = SMS.read_text(encoding="utf-8").splitlines()[start:start + n]
    return [line.split("\t", 1)[1].strip() for line in lines]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return sms()


@pytest.mark.parametrize("kind", KINDS)
def test_special_tokens_and_template(texts: list[str], kind: str) -> None:
    tok = train_tokenizer(texts, kind=kind, vocab_size=1500)  # type: ignore[arg-type]
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert tok.normalizer is None  # the preprocessing chain normalises, not the tokenizer
    assert 1000 < tok.get_vocab_size() <= 1500
    for text in texts:
        enc = tok.encode(text)
        assert enc.ids[0] == 2 and enc.ids[-1] == 3  # [CLS] ... [SEP]
        assert 0 not in enc.ids  # the pad id never appears in a real text
        assert 2 not in enc.ids[1:-1] and 3 not in enc.ids[1:-1]


@pytest.mark.parametrize("kind", KINDS)
def test_tokenize_transform_loads_the_file(tmp_path: Path, texts: list[str], kind: str) -> None:
    tok = train_tokenizer(texts, kind=kind, vocab_size=2000)  # type: ignore[arg-type]
    tok.save(str(tmp_path / "tokenizer.json"))
    step = Tokenize(path="tokenizer.json", base_dir=tmp_path, max_length=48, truncation=True)
    unseen = sms(12, start=3000)  # messages the tokenizer did not learn from
    batch = np.array([t.encode("utf-8") for t in unseen], dtype=object)
    ids = step(batch)
    assert isinstance(ids, np.ndarray) and ids.dtype == np.int64 and ids.shape == (12, 48)
    assert (ids[:, 0] == 2).all()
    for row, text in zip(ids, unseen, strict=True):
        expected = tok.encode(text).ids
        if len(expected) > 48:  # cut, keeping [SEP]
            expected = [*expected[:47], 3]
        assert row[:len(expected)].tolist() == expected
        assert (row[len(expected):] == 0).all()
    assert (ids[:, -1] == 0).any()  # some rows are padded, and with 0


def test_truncation_keeps_the_special_tokens(tmp_path: Path, texts: list[str]) -> None:
    tok = train_tokenizer(texts, vocab_size=1500)
    tok.save(str(tmp_path / "tokenizer.json"))
    long = max(texts, key=len)
    assert len(tok.encode(long).ids) > 12
    ids = Tokenize(path="tokenizer.json", base_dir=tmp_path, max_length=12,
                   truncation=True)(np.array([long.encode()], dtype=object))
    assert isinstance(ids, np.ndarray)
    assert ids.shape == (1, 12) and ids[0, 0] == 2 and ids[0, -1] == 3
    assert ids[0, 1:11].tolist() == tok.encode(long).ids[1:11]


@pytest.mark.parametrize("kind", KINDS)
def test_training_is_deterministic(tmp_path: Path, texts: list[str], kind: str) -> None:
    """The same texts give a byte-identical tokenizer.json, in this process and in another
    (tokenizers' own WordPieceTrainer does not: huggingface/tokenizers#1794)."""
    files = []
    for i in range(3):
        path = tmp_path / f"{i}.json"
        train_tokenizer(texts, kind=kind, vocab_size=1500).save(str(path))  # type: ignore[arg-type]
        files.append(path.read_bytes())
    code = ("import sys\nfrom shipyard.data.text_tokenizer import train_tokenizer\n"
            "from test_text_tokenizer import sms\n"
            f"train_tokenizer(sms(), kind={kind!r}, vocab_size=1500).save(sys.argv[1])\n")
    other = tmp_path / "other.json"
    env_path = f"{ROOT / 'src'}:{ROOT / 'tests'}:{ROOT / 'tests' / 'data'}"
    subprocess.run([sys.executable, "-c", code, str(other)], check=True, cwd=ROOT,
                   env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
    files.append(other.read_bytes())
    assert len(set(files)) == 1
    assert b"\xf3\xb0" not in files[0]  # no private stand-in characters leak into the file


def test_wordpiece_pieces_and_unknowns(texts: list[str]) -> None:
    tok = train_tokenizer(texts, vocab_size=1500)
    vocab = tok.get_vocab()
    chars = {c for t in texts for c in t if not c.isspace()}
    assert all(c in vocab and f"##{c}" in vocab for c in chars)
    assert any(p.startswith("##") and len(p) > 3 for p in vocab)  # merged continuations
    # a made-up word of known characters is spelt in pieces, never [UNK]
    enc = tok.encode("zqxwvrt supercalifragilistic")
    assert 1 not in enc.ids and any(t.startswith("##") for t in enc.tokens)
    assert tok.decode(enc.ids) == "zqxwvrt supercalifragilistic"
    # a character never seen in training is [UNK] (its whole word)
    unknown = tok.encode("hello \u0416\u0416 world")
    assert unknown.tokens.count("[UNK]") == 1
    assert unknown.offsets[unknown.tokens.index("[UNK]")] == (6, 8)
    # punctuation is split off (BERT's pre-tokenizer)
    assert tok.encode("ok!!").tokens[1:-1] == ["ok", "!", "!"]


def test_bpe_has_no_unknowns(texts: list[str]) -> None:
    tok = train_tokenizer(texts, kind="bpe", vocab_size=1500)
    for text in ["\u0416\u0443\u043a \U0001f600 caf\u00e9", *texts[:50]]:
        enc = tok.encode(text)
        assert 1 not in enc.ids
        assert tok.decode(enc.ids) == text  # byte-level: lossless


@pytest.mark.parametrize("kind", KINDS)
def test_vocab_size_limits(texts: list[str], kind: str) -> None:
    chars = {c for t in texts for c in t if not c.isspace()}
    need = 4 + (256 if kind == "bpe" else 2 * len(chars))
    with pytest.raises(ConfigError, match=rf"tokenizer\.vocab_size={need - 1} .* at least {need}"):
        train_tokenizer(texts, kind=kind, vocab_size=need - 1)  # type: ignore[arg-type]
    assert train_tokenizer(texts, kind=kind,  # type: ignore[arg-type]
                           vocab_size=need).get_vocab_size() == need
    # more than the data can fill: fine, the vocabulary stops growing
    big = train_tokenizer(texts, kind=kind, vocab_size=100_000)  # type: ignore[arg-type]
    assert need < big.get_vocab_size() < 100_000
    # min_frequency: fewer pieces pass a higher bar
    assert train_tokenizer(texts, kind=kind, vocab_size=100_000,  # type: ignore[arg-type]
                           min_frequency=5).get_vocab_size() < big.get_vocab_size()


def test_bad_arguments(texts: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"tokenizer\.kind must be one of"):
        train_tokenizer(texts, kind="unigram")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"tokenizer\.min_frequency"):
        train_tokenizer(texts, min_frequency=0)
    with pytest.raises(ConfigError, match=r"tokenizer\.vocab_size must be an integer"):
        train_tokenizer(texts, vocab_size=True)
    with pytest.raises(ConfigError, match=r"texts\[1\] must be a str, got bytes"):
        train_tokenizer(["ok", b"no"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="no text to learn from"):
        train_tokenizer(["", "  "])
