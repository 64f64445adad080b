"""The text classification experiment (``kind: text``): a table of texts and labels, the
preprocessing chain, and a TF-IDF linear model (``model.family: sklearn``) or a Transformer
encoder (``model.family: torch``). See ``examples/sms_spam_tfidf/experiment.yaml`` and
``examples/sms_spam_transformer/experiment.yaml``.

The chain (``preprocess``) is a list of :mod:`shipyard.transforms` steps, declared the way a
served model's ``config.yaml`` declares them: training runs them on every text before the
vectoriser or tokenizer, and the published model declares the same list, so the server runs the
same code on raw strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from shipyard.training._config_common import OutputConfig, Strict, model_name, seed_training
from shipyard.training.torch import TorchTraining

__all__ = [
    "DEFAULT_CHAIN",
    "CharNgrams",
    "TextDataConfig",
    "TextExperiment",
    "TextExportConfig",
    "TextSklearnSpec",
    "TextTorchSpec",
    "TokenizerConfig",
    "WordNgrams",
]

#: the chain when ``preprocess`` is left out: NFKC, lower case, surrounding blanks stripped
DEFAULT_CHAIN: list[dict[str, dict[str, Any]]] = [
    {"text_normalize": {"form": "NFKC", "lowercase": True}}]


_Strict = Strict


def _pair(v: Any) -> Any:
    return [v, v] if isinstance(v, int) and not isinstance(v, bool) else v


class TextDataConfig(_Strict):
    """The table of texts and labels, and how it is split."""

    source: str
    """A CSV/TSV file (a relative path is taken from the experiment file's folder; in ``--set``
    from the current folder)."""
    text_column: str | int
    """The column of the texts: its header name, or its 0-based position."""
    label_column: str | int
    """The column of the labels: its header name, or its 0-based position."""
    header: bool | None = None
    """The first row names the columns; null = detect it."""
    sep: str | None = None
    """Field separator; null = by extension (.tsv/.tab tab, .csv comma), else sniffed."""
    encoding: str = "utf-8"
    """Any Python codec, or ``auto`` (detected with charset_normalizer)."""
    quoting: Literal["auto", "csv", "none"] = "auto"
    """csv: fields may be quoted; none: quotes are ordinary characters; auto: csv for comma
    files, none for tab files."""
    class_names: list[str] | None = None
    """The labels in class order (the model's output order); null = sorted labels. Every label
    of the data must be listed."""
    test_size: float = Field(0.2, gt=0, lt=1)
    """Fraction of the rows held out for the test metrics (stratified, seeded)."""
    validation_size: float = Field(0.1, ge=0, lt=1)
    """Fraction of the rows held out for validation (the Transformer's early stopping and
    curves; the TF-IDF model reports it); 0 = none."""
    stratify: bool = True
    """Keep class proportions in every part."""
    limit: int | None = Field(None, ge=20)
    """At most this many rows (a stratified, seeded sample) before splitting, for quick trials;
    null = all."""

    @model_validator(mode="after")
    def _sizes(self) -> TextDataConfig:
        if self.test_size + self.validation_size >= 0.95:
            raise ValueError(
                f"data.test_size {self.test_size} + data.validation_size "
                f"{self.validation_size} leave under 5% of the rows for training; make them "
                "smaller")
        if self.class_names is not None and len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"data.class_names: {self.class_names} names a class twice")
        return self


class _Ngrams(_Strict):
    ngram_range: list[int] = Field(default_factory=lambda: [1, 2])
    """Smallest and largest n of the n-grams (one integer: only that n)."""
    min_df: int | float = Field(1, gt=0)
    """Ignore n-grams in fewer documents than this (a fraction: of the documents)."""
    max_df: int | float = Field(1.0, gt=0)
    """Ignore n-grams in more documents than this (a fraction: of the documents)."""
    max_features: int | None = Field(None, ge=1)
    """Keep only the most frequent n-grams; null = all. With n-grams longer than 1 it can
    keep a pair and drop one of its words, which the ONNX graph then never counts (the
    export check fails: measured on SMS at 2,000, 3,000 and 8,000); prefer ``min_df``, which
    cannot do that."""
    sublinear_tf: bool = False
    """1 + log(tf) instead of the raw count. skl2onnx 1.20 does not convert it faithfully
    (measured on SMS spam: ONNX probabilities off by up to 0.04), so the export check fails
    with it; leave it false for a model you serve."""

    @field_validator("ngram_range", mode="before")
    @classmethod
    def _range(cls, v: Any) -> Any:
        return _pair(v)

    @field_validator("ngram_range")
    @classmethod
    def _ordered(cls, v: list[int]) -> list[int]:
        if len(v) != 2 or not 1 <= v[0] <= v[1] <= 10:
            raise ValueError(f"must be [min_n, max_n] with 1 <= min_n <= max_n <= 10, got {v}")
        return v


class WordNgrams(_Ngrams):
    """TF-IDF of word n-grams. Words are what the chain leaves between spaces (the ``words``
    step splits on its pattern and joins with spaces), so the ONNX graph splits exactly like
    training did."""


class CharNgrams(_Ngrams):
    """TF-IDF of character n-grams of the chain's output."""

    ngram_range: list[int] = Field(default_factory=lambda: [2, 5])
    """Smallest and largest n of the character n-grams."""
    analyzer: Literal["char", "char_wb"] = "char"
    """char: n-grams across word boundaries; char_wb: inside words, padded with spaces
    (skl2onnx cannot convert char_wb: such a run has no model.onnx and cannot be
    published; export.json says why)."""


_CLASSIFIERS = ("logistic_regression", "linear_svm")


class TextSklearnSpec(_Strict):
    """TF-IDF features and a linear classifier (``family: sklearn``)."""

    family: Literal["sklearn"] = "sklearn"
    """Model family: scikit-learn."""
    type: Literal["logistic_regression", "linear_svm"] = "logistic_regression"
    """logistic_regression (LogisticRegression) or linear_svm (LinearSVC, with Platt-scaled
    probabilities by CalibratedClassifierCV)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Constructor arguments of the classifier (checked against its parameters), e.g.
    ``{C: 10, class_weight: balanced}``."""
    word: WordNgrams | None = Field(default_factory=WordNgrams)
    """Word n-gram TF-IDF; null = none."""
    char: CharNgrams | None = None
    """Character n-gram TF-IDF; null = none (the default)."""

    @model_validator(mode="after")
    def _some_features(self) -> TextSklearnSpec:
        if self.word is None and self.char is None:
            raise ValueError("model.word and model.char are both null; keep at least one "
                             "kind of n-grams")
        return self

    @property
    def label(self) -> str:
        """Short name for logs and reports."""
        kinds = "+".join(k for k in ("word", "char") if getattr(self, k) is not None)
        return f"tfidf ({kinds}) + {self.type}"


class TextTorchSpec(_Strict):
    """A Transformer encoder classifier (``family: torch``)."""

    family: Literal["torch"]
    """Model family: torch."""
    architecture: Literal["transformer"] = "transformer"
    """The network (:mod:`shipyard.models.transformer`)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Options of the network (TransformerConfig's fields: d_model, heads, d_ff, layers,
    dropout, positional, pooling, ...); checked by the trainer."""

    @property
    def label(self) -> str:
        """Short name for logs and reports."""
        return f"torch {self.architecture}"


TextModelSpec = Annotated[TextSklearnSpec | TextTorchSpec, Field(discriminator="family")]


class TokenizerConfig(_Strict):
    """The subword tokenizer trained on the training split (``family: torch``)."""

    kind: Literal["wordpiece", "bpe"] = "wordpiece"
    """wordpiece (BERT-style) or bpe (byte-level, GPT-2 style)."""
    vocab_size: int = Field(8000, ge=100, le=1_000_000)
    """Largest vocabulary (special tokens included)."""
    min_frequency: int = Field(2, ge=1)
    """A merge must occur this often in the training texts."""
    max_length: int = Field(128, ge=4, le=8192)
    """Tokens per text, [CLS] and [SEP] included: longer texts are cut (at training and at
    serving), shorter ones padded; at most ``model.params.max_length``."""


class TextExportConfig(_Strict):
    """The ONNX file (and torch program) ``shipyard publish`` puts into a model repository."""

    onnx: bool = True
    """Export ``model.onnx``. TF-IDF: the vectoriser and the classifier, input ``text`` BYTES
    [N]; Transformer: input ``input_ids`` INT64 [N, max_length], output ``logits``."""
    opset: int | None = Field(None, ge=13, le=23)
    """ONNX opset; null = the family's default (17 for scikit-learn, 18 for torch)."""
    tolerance: float = Field(1e-4, gt=0)
    """Largest difference of the probabilities (TF-IDF) or logits (Transformer) allowed between
    ONNX Runtime and the trained model on the test split."""
    torch_program: bool = True
    """Also write ``model.pt2`` (``torch.export``) for the server's torch runtime (torch)."""
    max_batch_size: int = Field(64, ge=0)
    """max_batch_size written into the published config.yaml."""
    dynamic_length: bool = True
    """Transformer: export ``model.onnx`` (and ``model.pt2``) for any length up to
    ``tokenizer.max_length``, and serve with ``tokenize`` ``padding: longest``: a batch is as
    long as its longest text, so short messages cost little (measured on SMS: batch 1 about 1.5x
    faster than at 64 tokens). false: every row is ``max_length`` long."""
    tokenizer_in_graph: bool = False
    """Transformer with ``tokenizer.kind: bpe``: also write ``model_text.onnx``, the tokenizer
    inside the graph (onnxruntime-extensions' GPT2Tokenizer, then [CLS]/[SEP], cutting and
    padding as ONNX operators) before ``model.onnx``: input ``text`` BYTES [N] (the chain's
    output) -> ``logits``, checked against the tokenize step's ids and torch's logits.
    ``shipyard publish --tokenizer graph`` serves it with the chain as the only steps (no
    tokenizer.json). Needs ``pip install 'shipyard[text-graph]'`` to train and to serve."""


class TextExperiment(_Strict):
    """A text classification experiment (``kind: text``)."""

    kind: Literal["text"]
    """``text``: this schema (texts and labels in a table)."""
    name: str
    """Experiment name; also the default model name when publishing (letters, digits, _ . -)."""
    task: Literal["binary", "multiclass"] = "multiclass"
    """Two classes or several (the same metrics either way)."""
    description: str = ""
    """Free text for the report and the published config.yaml."""
    seed: int = Field(0, ge=0)
    """Seed of the split and the models; also training.seed unless that is given."""
    data: TextDataConfig
    """The texts, the labels and the split."""
    preprocess: list[Any] = Field(default_factory=lambda: [dict(s) for s in DEFAULT_CHAIN])
    """The chain: :mod:`shipyard.transforms` text steps (text_normalize, words), run on every
    text at training and declared in the published config.yaml for the server."""
    model: TextModelSpec
    """TF-IDF + a linear model (family sklearn) or a Transformer encoder (family torch)."""
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    """The subword tokenizer (family torch only)."""
    training: TorchTraining = Field(default_factory=TorchTraining)
    """Epochs, batch size, optimizer, schedule, early stopping, device (family torch only)."""
    export: TextExportConfig = Field(default_factory=TextExportConfig)
    """ONNX export, its agreement check and the served answer."""
    output: OutputConfig = Field(default_factory=OutputConfig)
    """Where the run directory is written."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return model_name(v)

    @model_validator(mode="before")
    @classmethod
    def _training_seed(cls, v: Any) -> Any:
        if isinstance(v, Mapping) and isinstance(v.get("model"), Mapping) and \
                v["model"].get("family") == "torch":
            return seed_training(v)
        if isinstance(v, Mapping) and isinstance(v.get("model"), Mapping) and \
                "family" not in v["model"]:
            return {**v, "model": {"family": "sklearn", **v["model"]}}
        return v

    @field_validator("preprocess")
    @classmethod
    def _chain(cls, v: list[Any]) -> list[Any]:
        from shipyard.transforms import StepConfigError, build_steps, steps_output_spec

        try:
            steps = build_steps(v, load=False)
            if not steps:
                return v
            made = steps_output_spec(steps, ("BYTES", (-1,)))
        except StepConfigError as exc:
            raise ValueError(str(exc)) from None
        if made != ("BYTES", (-1,)):
            raise ValueError(f"the chain must give texts (BYTES [-1]) to the vectoriser or "
                             f"tokenizer, but its steps make {made}; keep text_normalize and "
                             "words steps only (tokenize is added by the trainer)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TextExperiment:
        # compared with the defaults (not "given"): a run's experiment.yaml spells out all
        torch_only = [k for k, default in (("tokenizer", TokenizerConfig()),
                                           ("training", TorchTraining()))
                      if getattr(self, k) != default]
        if self.model.family == "sklearn" and torch_only:
            raise ValueError(f"{', '.join(torch_only)}: only for model.family: torch (the "
                             "Transformer); remove it for the TF-IDF model")
        if self.model.family == "sklearn" and not self.export.torch_program:
            raise ValueError("export.torch_program: only for model.family: torch; remove it")
        if self.export.tokenizer_in_graph:
            if self.model.family == "sklearn":
                raise ValueError("export.tokenizer_in_graph: only for model.family: torch (the "
                                 "TF-IDF graph takes raw texts already); remove it")
            if self.tokenizer.kind != "bpe":
                raise ValueError(
                    f"export.tokenizer_in_graph: true needs tokenizer.kind: bpe, got "
                    f"tokenizer.kind: {self.tokenizer.kind} (onnxruntime-extensions converts "
                    "byte-level BPE only); set tokenizer.kind: bpe or "
                    "export.tokenizer_in_graph: false")
            if not self.export.onnx:
                raise ValueError("export.tokenizer_in_graph: true needs export.onnx: true (the "
                                 "tokenizer goes in front of model.onnx); set both or neither")
        if self.data.class_names is not None and self.task == "binary" and \
                len(self.data.class_names) != 2:
            raise ValueError(f"data.class_names: task binary has two classes, got "
                             f"{self.data.class_names}; set task: multiclass")
        return self

    @property
    def family_key(self) -> str:
        """The trainer's key in :data:`shipyard.training.families.FAMILIES`."""
        return f"text-{self.model.family}"

    @property
    def is_tree_model(self) -> bool:
        """Never (the tabular trainer's question)."""
        return False
