"""Pre- and post-processing steps, the same code for serving and training.

A pipeline is a list of steps declared in a model's ``config.yaml`` (or an experiment) as
``[{step: {parameter: value}}, ...]`` and built with :func:`build_steps`. Every step works on a
whole batch: numpy arrays in, numpy arrays out, the batch dimension first; ``BYTES`` items are
an object array of ``bytes``. ``output_spec((datatype, shape))`` says what a step makes (V2
datatypes, ``-1`` for a dynamic dimension). A bad item raises :class:`TransformError` with its
``index``; a bad declaration raises :class:`StepConfigError` with a path such as
``preprocess[2].resize.size``.

Catalogue (parameter = default; "required" has none):

Image
    ``image_decode``  PNG/JPEG bytes -> ``uint8`` ``[N, H, W]`` (L) or ``[N, H, W, 3]`` (RGB).
        ``mode`` = ``RGB`` (``L`` | ``RGB``; other modes converted, alpha dropped, 16-bit grey
        scaled); ``max_pixels`` = 16777216 (4096*4096, checked on the header before decoding).
        Items of different sizes give a ragged batch that ``resize``/``center_crop`` resolve.
    ``resize``  every image to one size, with Pillow.
        ``size`` required (``[height, width]`` or one int); ``interpolation`` = ``bilinear``
        (``bilinear`` | ``nearest`` | ``bicubic``). ``uint8`` stays ``uint8``, floats -> float32.
    ``center_crop``  the central part; smaller images are refused.  ``size`` required.
    ``to_dtype``  cast and scale: ``x.astype(dtype) * scale``.
        ``dtype`` = ``float32`` (``float16|float32|float64|uint8|int32|int64``);
        ``scale`` = 1.0 (``0.00392156862745098`` is 1/255).
    ``normalize``  ``(x - mean) / std`` per channel, float32.
        ``mean`` required; ``std`` required (> 0); ``channel_axis`` = -1.
    ``layout``  ``NHWC`` <-> ``NCHW``; grey ``[N, H, W]`` gains a channel of 1.
        ``to`` = ``NCHW``; ``source`` = ``NHWC`` (the layout of 4-d input).

Text
    ``text_normalize``  UTF-8 bytes -> normalised UTF-8 bytes, in this order:
        ``html_unescape`` = false (``&amp;`` -> ``&``); ``form`` = ``NFKC``
        (``NFKC|NFC|NFKD|NFD|null``); ``urls``, ``emails``, ``numbers`` = ``keep`` (``keep`` |
        ``remove``: a space | ``mask``: `` xxurl `` / `` xxemail `` / `` xxnum ``);
        ``lowercase`` = false; ``punctuation`` = false (true: every Unicode ``P*`` character ->
        a space, symbols kept); ``collapse_whitespace`` = false; ``strip`` = true.
    ``tokenize``  a Hugging Face ``tokenizers`` JSON file -> ``int64`` ``[N, max_length]``.
        ``path`` required (relative to the model's version folder); ``max_length`` = 128;
        ``truncation`` = false (a longer text is refused with its index; true cuts it);
        ``attention_mask`` = false (true: a dict ``{input_ids, attention_mask}``);
        ``add_special_tokens`` = true; ``pad_id`` = null (the tokenizer's, else ``[PAD]`` or
        ``<pad>``); ``allow_empty`` = false (an empty text is refused); ``padding`` =
        ``max_length`` (``longest``: rows as long as the batch's longest text).
    ``words``  UTF-8 bytes -> its words, joined by single spaces (an empty string if none).
        ``pattern`` = ``(?u)\\b\\w+\\b`` (one word; at most one capturing group);
        ``stop_words`` = null (``english``: scikit-learn's list | a list; case-sensitive: lower-case
        first); ``stemmer`` = null (``porter`` | ``snowball``, NLTK, lower-cases);
        ``language`` = ``english`` (snowball's); ``min_length`` = 1 (checked before stemming).

Post
    ``softmax``  along the last axis, numerically stable; no parameters.
    ``top_k``  ``{indices: int64 [N, k], scores: [N, k]}``, best first.  ``k`` = 1.
    ``labels``  class numbers (or each row's best score, or top_k's dict) -> names, BYTES.
        ``labels`` required (a list of strings).

Example::

    preprocess:
      - image_decode: {mode: L}
      - resize: {size: [28, 28]}
      - to_dtype: {dtype: float32, scale: 0.00392156862745098}
      - normalize: {mean: [0.5], std: [0.5]}
      - layout: {to: NCHW}
    postprocess:
      - softmax: {}
      - top_k: {k: 3}
      - labels: {labels: [zero, one, two, three, four, five, six, seven, eight, nine]}

The package imports numpy, Pillow and, when a step that needs them loads, ``tokenizers``
(``tokenize``) and ``nltk`` (``words`` with a stemmer); never torch, scikit-learn, the server or
the training half.
"""

from __future__ import annotations

from shipyard.transforms.base import DATATYPES, Array, Batch, Spec, Specs, Step, datatype_of
from shipyard.transforms.errors import StepConfigError, TransformError
from shipyard.transforms.geometry import CenterCrop, Resize
from shipyard.transforms.image import ImageDecode
from shipyard.transforms.post import Labels, Softmax, TopK
from shipyard.transforms.registry import (
    STEPS,
    apply_steps,
    build_step,
    build_steps,
    steps_input_spec,
    steps_output_spec,
    steps_to_config,
)
from shipyard.transforms.tensor import Layout, Normalize, ToDtype
from shipyard.transforms.text import TextNormalize, Tokenize
from shipyard.transforms.words import Words

__all__ = [
    "DATATYPES",
    "STEPS",
    "Array",
    "Batch",
    "CenterCrop",
    "ImageDecode",
    "Labels",
    "Layout",
    "Normalize",
    "Resize",
    "Softmax",
    "Spec",
    "Specs",
    "Step",
    "StepConfigError",
    "TextNormalize",
    "ToDtype",
    "Tokenize",
    "TopK",
    "TransformError",
    "Words",
    "apply_steps",
    "build_step",
    "build_steps",
    "datatype_of",
    "steps_input_spec",
    "steps_output_spec",
    "steps_to_config",
]
