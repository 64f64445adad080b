"""A Transformer encoder text classifier from a pydantic config.

:func:`build_transformer` turns a :class:`TransformerConfig` into a plain
:class:`torch.nn.Module` taking token ids ``int64`` ``[N, L]`` (the output of the
``tokenize`` transform: ``[CLS] ... [SEP]`` then the pad id up to its ``max_length``) and
returning logits ``float32`` ``[N, num_classes]``. It exports with
``torch.onnx.export(..., dynamo=True)`` and ``torch.export``.

The network: token embedding (scaled by ``sqrt(d_model)`` when ``scale_embedding``) plus
sinusoidal or learned positions, embedding dropout, ``layers`` encoder layers
(:class:`torch.nn.TransformerEncoder`, batch first, pre- or post-norm), an optional final
layer norm, mean or ``[CLS]`` pooling, then a classifier head (an optional hidden layer).

Padding: the mask is ``input_ids != pad_id`` (the tokenizer never emits the pad token for
real text); padded keys are ignored by attention and by mean pooling. Position 0 (the
tokenizer's ``[CLS]``) is always attended, so a row of nothing but padding gives finite logits
instead of NaN.

Dynamic padding: in eager mode the forward drops the trailing columns that are padding in
every row of the batch, so a batch of short messages padded to 128 costs about its own
length; the logits are the same (the dropped columns were masked anyway). It does not trim
while ``torch.export``, ``torch.onnx.export``, ``torch.compile`` or ``torch.jit.trace`` trace
it (the exported graph computes every column it is given: a fixed ``L``, or with
``export_text_classifier(dynamic_length=True)`` whatever length the server's ``tokenize``
step pads a batch to; under ``torch.compile`` a data-dependent length would recompile per
length), nor when the module's ``trim_padding`` is ``False``.

Initialisation: token (and learned position) embeddings normal with std ``d_model ** -0.5``
(unit scale after the ``sqrt(d_model)`` factor; the pad row is zero and gets no gradient);
the encoder layers keep torch's own initialisation; head layers Kaiming-normal (the hidden
layer) and Glorot-uniform (the classifier), biases 0.
"""

from __future__ import annotations

import math
from typing import Literal, Self

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from shipyard.errors import ConfigError, DataError
from shipyard.models.cnn import count_parameters

__all__ = ["TransformerClassifier", "TransformerConfig", "build_transformer",
           "count_parameters"]


class TransformerConfig(BaseModel):
    """The encoder classifier's architecture (``model.params`` of a text experiment).

    The defaults (d_model 64, 4 heads, d_ff 128, 2 layers; about 0.6M parameters with an
    8000-token vocabulary, most of them the embedding) are small enough to train on a CPU;
    the original Transformer's base sizes (``d_model: 512, heads: 8, d_ff: 2048, layers: 6``)
    are expressible too."""

    model_config = ConfigDict(extra="forbid")

    d_model: int = Field(64, ge=2, le=8192)
    """Width of the token representations (embedding size); a multiple of ``heads``."""
    heads: int = Field(4, ge=1, le=256)
    """Attention heads per layer; must divide ``d_model`` (each head gets
    ``d_model / heads`` dimensions)."""
    d_ff: int = Field(128, ge=1, le=65536)
    """Hidden size of each layer's feed-forward block."""
    layers: int = Field(2, ge=1, le=64)
    """How many encoder layers are stacked."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout inside every encoder layer (attention weights, feed-forward, residuals)."""
    embedding_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    """Dropout on the summed token + position embeddings; default ``null``: ``dropout``."""
    max_length: int = Field(128, ge=1, le=65536)
    """Positions the model can take: the longest ``L`` of its input (at least the
    ``tokenize`` step's ``max_length``); a longer input is refused with a DataError."""
    positional: Literal["sinusoidal", "learned"] = "sinusoidal"
    """Position encoding added to the token embeddings: fixed sinusoids (no parameters) or a
    learned ``max_length x d_model`` table."""
    pooling: Literal["mean", "cls"] = "mean"
    """How one vector per text is made: the mean over non-padding positions, or the vector
    at position 0 (the tokenizer's ``[CLS]``)."""
    activation: Literal["relu", "gelu"] = "gelu"
    """Activation of the feed-forward blocks (and of the head's hidden layer)."""
    norm_first: bool = True
    """Pre-norm layers (layer norm before attention and feed-forward; trains more stably
    without warm-up) instead of the original post-norm."""
    final_norm: bool | None = None
    """A layer norm after the last layer; default ``null``: ``norm_first`` (pre-norm layers
    leave their output un-normalised, post-norm layers already end in one)."""
    layer_norm_eps: float = Field(1e-5, gt=0.0, le=0.1)
    """Epsilon of every layer norm."""
    scale_embedding: bool = True
    """Multiply the token embeddings by ``sqrt(d_model)`` before adding the positions."""
    classifier_hidden: int = Field(0, ge=0, le=65536)
    """Size of a hidden layer between the pooled vector and the logits; 0 = none (a single
    linear classifier)."""
    classifier_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Dropout on the pooled vector (and after the hidden layer, when there is one)."""

    @model_validator(mode="after")
    def _heads_divide_d_model(self) -> Self:
        if self.d_model % self.heads:
            options = [h for h in range(1, min(self.d_model, 64) + 1) if self.d_model % h == 0]
            raise ValueError(
                f"heads={self.heads} does not divide d_model={self.d_model}; choose heads "
                f"from {options} or make d_model a multiple of {self.heads}")
        return self


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """The fixed position encoding of "Attention is all you need": ``[length, d_model]``,
    sines in the even and cosines in the odd dimensions, wavelengths from 2*pi to
    10000*2*pi."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64)
                          * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
    return table.float()


def _exporting() -> bool:
    """Whether torch.export, torch.onnx.export (dynamo, or the TorchScript tracer),
    torch.compile or ``torch.jit.trace`` is tracing the forward (shapes must then not depend on
    the data)."""
    return bool(torch.compiler.is_compiling() or torch.compiler.is_exporting()
                or torch._C._get_tracing_state() is not None)


class TransformerClassifier(nn.Module):
    """Token ids ``[N, L]`` -> logits ``[N, num_classes]``; see the module docstring.

    ``trim_padding`` (default ``True``): drop all-padding trailing columns in eager mode."""

    def __init__(self, cfg: TransformerConfig, vocab_size: int, num_classes: int,
                 pad_id: int) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.max_length = cfg.max_length
        self.pooling = cfg.pooling
        self.trim_padding = True
        self.embed_scale = math.sqrt(cfg.d_model) if cfg.scale_embedding else 1.0
        self.embed = nn.Embedding(vocab_size, cfg.d_model, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=cfg.d_model ** -0.5)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.learned_positions: nn.Parameter | None = None
        if cfg.positional == "learned":
            self.learned_positions = nn.Parameter(
                torch.randn(cfg.max_length, cfg.d_model) * cfg.d_model ** -0.5)
        else:  # derived from the config: not part of the state dict
            self.register_buffer("sinusoids", sinusoidal_positions(cfg.max_length, cfg.d_model),
                                 persistent=False)
        self.embed_dropout = nn.Dropout(
            cfg.dropout if cfg.embedding_dropout is None else cfg.embedding_dropout)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.heads, cfg.d_ff, cfg.dropout, activation=cfg.activation,
            layer_norm_eps=cfg.layer_norm_eps, batch_first=True, norm_first=cfg.norm_first)
        final = cfg.norm_first if cfg.final_norm is None else cfg.final_norm
        self.encoder = nn.TransformerEncoder(
            layer, cfg.layers, norm=nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
            if final else None, enable_nested_tensor=False)
        head: list[nn.Module] = [nn.Dropout(cfg.classifier_dropout)]
        features = cfg.d_model
        if cfg.classifier_hidden:
            hidden = nn.Linear(features, cfg.classifier_hidden)
            nn.init.kaiming_normal_(hidden.weight, nonlinearity="relu")
            nn.init.zeros_(hidden.bias)
            act = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
            head += [hidden, act, nn.Dropout(cfg.classifier_dropout)]
            features = cfg.classifier_hidden
        classifier = nn.Linear(features, num_classes)
        nn.init.xavier_uniform_(classifier.weight)
        nn.init.zeros_(classifier.bias)
        head.append(classifier)
        self.head = nn.Sequential(*head)

    def positions(self, length: int) -> torch.Tensor:
        """The position encodings of the first ``length`` positions, ``[length, d_model]``."""
        if self.learned_positions is not None:
            return self.learned_positions[:length]
        return self.get_buffer("sinusoids")[:length]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` of token ids ``[N, L]`` (``L <= max_length``)."""
        if input_ids.dim() != 2:
            raise DataError(f"input_ids must be [N, L] token ids, got shape "
                            f"{list(input_ids.shape)}")
        length = input_ids.shape[1]
        if length > self.max_length:
            raise DataError(
                f"input_ids has {length} positions, more than the model's max_length="
                f"{self.max_length}; tokenize to at most {self.max_length} tokens (or raise "
                "model.params.max_length)")
        keep = input_ids != self.pad_id
        keep = keep | (torch.arange(length, device=input_ids.device) == 0)  # [CLS] always
        if self.trim_padding and not _exporting():
            used = int(torch.nonzero(keep.any(0)).max()) + 1
            if used < length:
                input_ids, keep = input_ids[:, :used], keep[:, :used]
                length = used
        x = self.embed(input_ids) * self.embed_scale + self.positions(length)
        h = self.encoder(self.embed_dropout(x), src_key_padding_mask=~keep)
        if self.pooling == "cls":
            pooled = h[:, 0]
        else:
            weights = keep.to(h.dtype).unsqueeze(-1)
            pooled = (h * weights).sum(1) / weights.sum(1)
        logits: torch.Tensor = self.head(pooled)
        return logits


def build_transformer(cfg: TransformerConfig, vocab_size: int, num_classes: int,
                      pad_id: int) -> TransformerClassifier:
    """The classifier of ``cfg`` over a ``vocab_size``-token vocabulary, for ``num_classes``
    classes, with ``pad_id`` the padding token's id (``[PAD]``, 0 for
    :func:`shipyard.data.text_tokenizer.train_tokenizer`'s tokenizers). Raises
    :class:`ConfigError` naming the bad argument."""
    for name, value, low in (("vocab_size", vocab_size, 2), ("num_classes", num_classes, 1),
                             ("pad_id", pad_id, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"build_transformer {name} must be an integer >= {low}, "
                              f"got {value!r}")
    if pad_id >= vocab_size:
        raise ConfigError(f"build_transformer pad_id={pad_id} is not a token of the "
                          f"{vocab_size}-token vocabulary; pass the tokenizer's [PAD] id")
    return TransformerClassifier(cfg, vocab_size, num_classes, pad_id)
