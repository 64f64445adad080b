"""Image data sets: IDX files, folders of images, scikit-learn's digits; decoded once, cached.

A source is spelled as one string (what an experiment's ``data.source`` holds):

``idx:FOLDER``
    MNIST-style IDX files in ``FOLDER``: ``train-images-idx3-ubyte`` with
    ``train-labels-idx1-ubyte`` and/or ``t10k-images-idx3-ubyte`` with ``t10k-labels-idx1-ubyte``
    (each may end in ``.gz``; ``test-`` may stand for ``t10k-``), giving the splits ``train`` and
    ``test``. Debian's ``dataset-fashion-mnist`` puts Fashion-MNIST in
    ``idx:/usr/share/datasets/fashion-mnist``.
``idx:IMAGES,LABELS``
    One pair of IDX files; the split ``all``.
``FOLDER`` (a plain path)
    One subfolder per class holding PNG or JPEG files (any size, grey or colour, searched
    recursively): ``FOLDER/<class>/*.png``; the split ``all``. Or split folders first,
    ``FOLDER/train/<class>/...`` and ``FOLDER/test/<class>/...`` (``train``, ``val``/``validation``
    and ``test`` are recognised), giving those splits. Classes are the folder names, sorted
    (numerically when all are numbers), the same label numbers in every split.
``sklearn:digits``
    scikit-learn's bundled 8x8 digits (1797 images); the split ``all``. Their values 0..16 are
    scaled to pixels 0..255 (``rint(v * 255 / 16)``).

Every image comes out as ``uint8`` ``[H, W, C]`` of the requested ``size`` and ``channels``, made
by the same steps the server runs on a request's bytes (:mod:`shipyard.transforms`):
``image_decode`` (``mode`` ``L`` for 1 channel, ``RGB`` for 3; Pillow converts colour to grey and
back) and ``resize``. IDX and digits arrays skip the decode and go through the same ``resize``.
The model's float input is then :func:`to_tensor`: ``to_dtype`` (1/255), ``normalize`` (mean,
std), ``layout`` (NCHW); :func:`preprocess_steps` is that whole list in the declarative form, for a
published model's ``config.yaml``, so training and serving cannot drift.

Decoded arrays are cached as ``.npy`` files under ``cache_dir`` (default
:func:`default_cache_dir`), keyed by the source, every input file's path, size and mtime, and the
size, channels and interpolation; a second load reads them back without decoding.

A bad spelling or a missing path is a :class:`ConfigError`; a file that is there but broken (bad
IDX header, truncated, undecodable image) is a :class:`DataError`. Both name the path and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from shipyard.data.idx import read_idx
from shipyard.errors import ConfigError, DataError
from shipyard.transforms import Resize, StepConfigError, TransformError, apply_steps, build_steps

__all__ = [
    "FASHION_MNIST_CLASSES",
    "IDX_PREFIX",
    "IMAGE_SUFFIXES",
    "ImageSet",
    "decode_steps",
    "default_cache_dir",
    "load_image_source",
    "preprocess_steps",
    "tensor_steps",
    "to_tensor",
]

IDX_PREFIX = "idx:"
SKLEARN_IMAGE_SOURCES = ("sklearn:digits",)
#: File suffixes a folder source reads (case-insensitive); other files are ignored.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Fashion-MNIST's class names, label 0 first (zalandoresearch/fashion-mnist README).
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
_IDX_PREFIXES = {"train": ("train",), "test": ("t10k", "test")}
_CACHE_VERSION = 1
_DECODE_CHUNK = 512
_SPELLINGS = ("idx:FOLDER (MNIST-style IDX files), idx:IMAGES,LABELS, a folder with one "
              "subfolder per class (optionally inside train/ and test/), or sklearn:digits")

U8: TypeAlias = npt.NDArray[np.uint8]


@dataclass(frozen=True, eq=False)
class ImageSet:
    """One split of an image source: pixels, labels and where they came from."""

    images: npt.NDArray[np.uint8]
    """``uint8`` ``[N, H, W, C]`` (``C`` = 1 or 3), not normalised: :func:`to_tensor` makes the
    model's float ``NCHW`` input, as the server's steps do."""
    labels: npt.NDArray[np.int64]
    """``int64`` ``[N]``, class numbers indexing :attr:`class_names`."""
    class_names: tuple[str, ...]
    """The name of each class number, shared by all splits of the source."""
    files: tuple[str, ...] | None
    """Each image's file, relative to the source folder (``train/3/17.png``); ``None`` for
    sources without a file per image (IDX, digits)."""
    source: str
    """The source as resolved: ``idx:/abs/folder``, ``/abs/folder``, ``sklearn:digits``."""
    split: str
    """``train``, ``val``, ``test`` or ``all``."""
    from_cache: bool = False
    """Whether the arrays were read from the cache rather than decoded."""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of every image."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def channels(self) -> int:
        """1 (grey) or 3 (RGB)."""
        return int(self.images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices: npt.ArrayLike, split: str | None = None) -> ImageSet:
        """The images at ``indices`` (for a validation split), optionally renamed."""
        index = np.asarray(indices, dtype=np.int64)
        files = None if self.files is None else tuple(self.files[i] for i in index)
        return replace(self, images=self.images[index], labels=self.labels[index], files=files,
                       split=split or self.split)


# --- the steps shared with serving ---------------------------------------------------------

def decode_steps(size: int | Sequence[int], channels: int = 1,
                 interpolation: str = "bilinear") -> list[dict[str, dict[str, Any]]]:
    """Encoded bytes -> ``uint8`` pixels of ``size``: ``image_decode`` then ``resize``."""
    height, width = _size(size)
    return [{"image_decode": {"mode": _mode(channels)}},
            {"resize": {"size": [height, width], "interpolation": interpolation}}]


def tensor_steps(mean: Sequence[float] | float | None = None,
                 std: Sequence[float] | float | None = None) -> list[dict[str, dict[str, Any]]]:
    """``uint8`` NHWC pixels -> the model's ``float32`` NCHW input: ``to_dtype`` (x / 255),
    ``normalize`` (``(x - mean) / std`` per channel, left out when both are ``None``) and
    ``layout``."""
    steps: list[dict[str, dict[str, Any]]] = [
        {"to_dtype": {"dtype": "float32", "scale": 1 / 255}}]
    if (mean is None) != (std is None):
        raise ConfigError("normalisation needs both mean and std (one number per channel, or "
                          f"one for all); got mean={mean!r}, std={std!r}")
    if mean is not None and std is not None:
        steps.append({"normalize": {"mean": _floats(mean), "std": _floats(std)}})
    steps.append({"layout": {"to": "NCHW"}})
    return steps


def preprocess_steps(size: int | Sequence[int], channels: int = 1,
                     mean: Sequence[float] | float | None = None,
                     std: Sequence[float] | float | None = None,
                     interpolation: str = "bilinear") -> list[dict[str, dict[str, Any]]]:
    """The whole serving ``preprocess`` list for a model trained on these images: bytes in,
    exactly the training tensor out (:func:`decode_steps` + :func:`tensor_steps`)."""
    return decode_steps(size, channels, interpolation) + tensor_steps(mean, std)


def to_tensor(images: npt.NDArray[np.uint8], mean: Sequence[float] | float | None = None,
              std: Sequence[float] | float | None = None) -> npt.NDArray[np.float32]:
    """``uint8`` ``[N, H, W, C]`` -> ``float32`` ``[N, C, H, W]`` through :func:`tensor_steps`."""
    try:
        out = apply_steps(build_steps(tensor_steps(mean, std)), images)
    except (TransformError, StepConfigError) as exc:
        raise ConfigError(f"cannot normalise images {list(images.shape)} with mean={mean!r}, "
                          f"std={std!r}: {exc}; give one mean and std per channel") from exc
    assert isinstance(out, np.ndarray)
    return out


# --- loading -------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$SHIPYARD_CACHE_DIR``, else ``$XDG_CACHE_HOME/shipyard/images``, else
    ``~/.cache/shipyard/images``."""
    if os.environ.get("SHIPYARD_CACHE_DIR"):
        return Path(os.environ["SHIPYARD_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shipyard" / "images"


def load_image_source(
    source: str,
    *,
    size: int | Sequence[int],
    channels: int = 1,
    interpolation: str = "bilinear",
    class_names: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    cache: bool = True,
    base_dir: str | Path | None = None,
) -> dict[str, ImageSet]:
    """Load every split of ``source`` (spellings in the module docstring) as :class:`ImageSet`.

    Args:
        size: ``(height, width)`` or one int for a square; every image is resized to it.
        channels: 1 (grey) or 3 (RGB).
        interpolation: the ``resize`` step's ``bilinear``, ``nearest`` or ``bicubic``.
        class_names: names for the class numbers instead of the source's own.
        cache_dir: where decoded arrays are kept; default :func:`default_cache_dir`.
        cache: ``False`` decodes every time and writes nothing.
        base_dir: the folder a relative path is taken from (the experiment file's); default
            the current folder.

    Returns ``{"train": ..., "test": ...}`` for sources with splits, else ``{"all": ...}``.
    """
    height, width = _size(size)
    _mode(channels)
    if interpolation not in ("bilinear", "nearest", "bicubic"):
        raise ConfigError(f"interpolation {interpolation!r} is not one of bilinear, nearest, "
                          "bicubic")
    reader = _reader(source, base_dir)
    params = {"size": [height, width], "channels": channels, "interpolation": interpolation}
    key_doc = {"version": _CACHE_VERSION, "source": reader.source, "inputs": reader.inputs(),
               **params}
    key = hashlib.sha256(json.dumps(key_doc, sort_keys=True).encode()).hexdigest()[:32]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    sets = _read_cache(folder / key, reader.source) if cache else None
    if sets is None:
        sets = reader.load((height, width), channels, interpolation)
        if cache:
            _write_cache(folder, key, sets)
    if class_names is not None:
        names = tuple(str(n) for n in class_names)
        needed = max((int(s.labels.max()) + 1 for s in sets.values() if len(s)), default=0)
        if len(names) < needed:
            raise ConfigError(f"class_names has {len(names)} names, but source {source!r} has "
                              f"labels up to {needed - 1}; give one name per class")
        sets = {k: replace(s, class_names=names) for k, s in sets.items()}
    return sets


@dataclass
class _Reader:
    source: str
    inputs: Callable[[], list[Any]]
    load: Callable[[tuple[int, int], int, str], dict[str, ImageSet]]


def _reader(source: str, base_dir: str | Path | None) -> _Reader:
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"image source {source!r} is empty; give {_SPELLINGS}")
    if source.startswith("sklearn:"):
        if source not in SKLEARN_IMAGE_SOURCES:
            raise ConfigError(f"image source {source!r}: the bundled image data set is "
                              f"sklearn:digits; or give {_SPELLINGS}")
        return _Reader(source, _sklearn_inputs, _load_digits)
    if source.startswith(IDX_PREFIX):
        parts = [p.strip() for p in source[len(IDX_PREFIX):].split(",")]
        paths = [_path(p, base_dir) for p in parts if p]
        if len(paths) == 1:
            pairs = _idx_folder(paths[0])
        elif len(paths) == 2:
            for path in paths:
                if not path.is_file():
                    raise ConfigError(f"IDX file {path} does not exist (source {source!r}); "
                                      "give idx:IMAGES,LABELS with two existing files")
            pairs = {"all": (paths[0], paths[1])}
        else:
            raise ConfigError(f"image source {source!r}: give idx:FOLDER or idx:IMAGES,LABELS")
        resolved = IDX_PREFIX + ",".join(str(p) for p in paths)
        files = [f for pair in pairs.values() for f in pair]
        return _Reader(resolved, lambda: _stats(files),
                       lambda s, c, i: _load_idx(resolved, pairs, s, c, i))
    root = _path(source, base_dir)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise ConfigError(f"image folder {root} {what} (source {source!r}); give {_SPELLINGS}")
    splits = _scan_folder(root)
    files = [root / f for items in splits.values() for f, _ in items]
    return _Reader(str(root), lambda: _stats(files),
                   lambda s, c, i: _load_folder(root, splits, s, c, i))


def _path(text: str, base_dir: str | Path | None) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()) / path
    return path.resolve()


def _stats(files: Sequence[Path]) -> list[Any]:
    out: list[Any] = []
    for path in files:
        try:
            stat = path.stat()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
        out.append([str(path), stat.st_size, stat.st_mtime_ns])
    return out


# --- IDX -----------------------------------------------------------------------------------

def _idx_folder(folder: Path) -> dict[str, tuple[Path, Path]]:
    if folder.is_file():
        raise ConfigError(f"IDX source {folder} is one file; give idx:IMAGES,LABELS (both files "
                          "of the pair) or idx:FOLDER holding them")
    if not folder.is_dir():
        hint = (" (install the Debian package dataset-fashion-mnist for Fashion-MNIST)"
                if "fashion" in str(folder).lower() else "")
        raise ConfigError(f"IDX folder {folder} does not exist{hint}; give idx:FOLDER with "
                          "train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz)")
    pairs: dict[str, tuple[Path, Path]] = {}
    for split, prefixes in _IDX_PREFIXES.items():
        found = [(_find(folder, f"{p}-images-idx3-ubyte"), _find(folder, f"{p}-labels-idx1-ubyte"))
                 for p in prefixes]
        for images, labels in found:
            if images and labels:
                pairs[split] = (images, labels)
                break
            if images or labels:
                have, missing = (images, "labels") if images else (labels, "images")
                raise ConfigError(f"IDX folder {folder} has {have} but no matching {missing} "
                                  "file; each split needs both")
    if not pairs:
        raise ConfigError(f"IDX folder {folder} holds no train-images-idx3-ubyte(.gz) / "
                          "train-labels-idx1-ubyte(.gz) (nor t10k-...) pair; give the folder "
                          "of MNIST-style IDX files, or idx:IMAGES,LABELS")
    return pairs


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _load_idx(source: str, pairs: dict[str, tuple[Path, Path]], size: tuple[int, int],
              channels: int, interpolation: str) -> dict[str, ImageSet]:
    arrays: dict[str, tuple[U8, npt.NDArray[np.int64]]] = {}
    for split, (images_path, labels_path) in pairs.items():
        images = read_idx(images_path, ndim=3)
        labels = read_idx(labels_path, ndim=1)
        if images.dtype != np.uint8:
            raise DataError(f"IDX images {images_path} hold {images.dtype}, expected unsigned "
                            "bytes (type code 0x08)")
        if labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
            raise DataError(f"IDX labels {labels_path} must be non-negative integers, got "
                            f"{labels.dtype}")
        if len(images) != len(labels):
            raise DataError(f"IDX images {images_path} hold {len(images)} images but labels "
                            f"{labels_path} hold {len(labels)}; they must be a matching pair")
        arrays[split] = (images, labels.astype(np.int64))
    top = max((int(lab.max()) for _, lab in arrays.values() if lab.size), default=0)
    names: tuple[str, ...]
    if "fashion" in source.lower() and top < len(FASHION_MNIST_CLASSES):
        names = FASHION_MNIST_CLASSES
    else:
        names = tuple(str(i) for i in range(top + 1))
    return {split: ImageSet(_from_grey(images, size, channels, interpolation), labels, names,
                            None, source, split)
            for split, (images, labels) in arrays.items()}


def _from_grey(images: U8, size: tuple[int, int], channels: int, interpolation: str) -> U8:
    """Grey ``[N, H, W]`` arrays -> ``[N, h, w, C]``: converted as ``image_decode`` converts
    (Pillow's L -> RGB repeats the grey value), then the ``resize`` step."""
    if channels == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.shape[1:3] != size:
        out = np.empty((len(images), *size, *images.shape[3:]), dtype=np.uint8)
        step = Resize(list(size), interpolation)
        for start in range(0, len(images), 4096):
            out[start:start + 4096] = step(images[start:start + 4096])
        images = out
    return np.ascontiguousarray(images.reshape(*images.shape[:3], channels))


# --- scikit-learn's digits -----------------------------------------------------------------

def _sklearn_inputs() -> list[Any]:
    import sklearn

    return ["sklearn", sklearn.__version__]


def _load_digits(size: tuple[int, int], channels: int,
                 interpolation: str) -> dict[str, ImageSet]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255 / 16))
    images = np.clip(pixels, 0, 255).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    names = tuple(str(n) for n in bunch.target_names)
    return {"all": ImageSet(_from_grey(images, size, channels, interpolation), labels, names,
                            None, "sklearn:digits", "all")}


# --- folders -------------------------------------------------------------------------------

def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_folder(root: Path) -> dict[str, list[tuple[str, str]]]:
    """``split -> [(file relative to root, class name), ...]``, files sorted."""
    subs = _subfolders(root)
    split_dirs = [p for p in subs if p.name.lower() in _SPLIT_FOLDERS]
    if split_dirs:
        others = [p.name for p in subs if p not in split_dirs]
        if others:
            raise ConfigError(f"image folder {root} mixes split folders "
                              f"({', '.join(p.name for p in split_dirs)}) with other folders "
                              f"({', '.join(others)}); put every class folder inside train/ "
                              "(and test/), or use no split folders")
        named: dict[str, Path] = {}
        for p in split_dirs:
            split = _SPLIT_FOLDERS[p.name.lower()]
            if split in named:
                raise ConfigError(f"image folder {root} has two {split} folders "
                                  f"({named[split].name}, {p.name}); keep one")
            named[split] = p
        groups: dict[str, Path] = {s: named[s] for s in ("train", "val", "test") if s in named}
    else:
        groups = {"all": root}
    splits: dict[str, list[tuple[str, str]]] = {}
    for split, folder in groups.items():
        classes = _subfolders(folder)
        if not classes:
            raise ConfigError(f"image folder {folder} has no class subfolders; put each class's "
                              f"images in {folder}/<class>/ (PNG or JPEG)")
        items: list[tuple[str, str]] = []
        for class_dir in classes:
            files = sorted(p for p in class_dir.rglob("*")
                           if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                           and not p.name.startswith("."))
            if not files:
                raise ConfigError(f"class folder {class_dir} holds no PNG or JPEG files "
                                  f"({', '.join(IMAGE_SUFFIXES)}); add images or remove it")
            items += [(str(f.relative_to(root)), class_dir.name) for f in files]
        splits[split] = items
    return splits


def _class_order(names: set[str]) -> tuple[str, ...]:
    if all(n.isdigit() for n in names):
        return tuple(sorted(names, key=lambda n: (int(n), n)))
    return tuple(sorted(names))


def _load_folder(root: Path, splits: dict[str, list[tuple[str, str]]], size: tuple[int, int],
                 channels: int, interpolation: str) -> dict[str, ImageSet]:
    names = _class_order({c for items in splits.values() for _, c in items})
    number = {name: i for i, name in enumerate(names)}
    steps = build_steps(decode_steps(size, channels, interpolation))
    out: dict[str, ImageSet] = {}
    for split, items in splits.items():
        images = np.empty((len(items), *size, channels), dtype=np.uint8)
        for start in range(0, len(items), _DECODE_CHUNK):
            chunk = [f for f, _ in items[start:start + _DECODE_CHUNK]]
            images[start:start + len(chunk)] = _decode(root, chunk, steps).reshape(
                len(chunk), *size, channels)
        labels = np.array([number[c] for _, c in items], dtype=np.int64)
        out[split] = ImageSet(images, labels, names, tuple(f for f, _ in items), str(root), split)
    return out


def _decode(root: Path, files: list[str], steps: Sequence[Any]) -> U8:
    """Decode and resize ``files`` with the serving steps (one batch)."""
    data = np.empty(len(files), dtype=object)
    for i, name in enumerate(files):
        try:
            data[i] = (root / name).read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read image {root / name}: {exc.strerror or exc}") from exc
    try:
        out = apply_steps(steps, data)
    except TransformError as exc:
        where = root / files[exc.index] if exc.index is not None else root
        raise DataError(f"cannot use image {where}: {exc.reason}; replace or remove the "
                        "file") from exc
    assert isinstance(out, np.ndarray)
    return out


# --- the cache -----------------------------------------------------------------------------

def _read_cache(folder: Path, source: str) -> dict[str, ImageSet] | None:
    """The cached splits, or ``None`` when absent or unreadable (then they are decoded again)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        out = {}
        for split, info in meta["splits"].items():
            images = np.load(folder / f"{split}-images.npy", allow_pickle=False)
            labels = np.load(folder / f"{split}-labels.npy", allow_pickle=False)
            files = tuple(info["files"]) if info["files"] is not None else None
            if len(images) != len(labels) or (files is not None and len(files) != len(labels)):
                return None
            out[split] = ImageSet(images, labels, tuple(meta["class_names"]), files, source,
                                  split, from_cache=True)
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(root: Path, key: str, sets: dict[str, ImageSet]) -> None:
    """Write the arrays into a fresh folder, then rename it into place (atomic; a concurrent
    writer's finished folder wins). A cache that cannot be written is skipped, not fatal."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    except OSError:
        return
    try:
        names = next(iter(sets.values())).class_names if sets else ()
        meta = {"class_names": list(names),
                "splits": {k: {"files": list(s.files) if s.files is not None else None}
                           for k, s in sets.items()}}
        for split, image_set in sets.items():
            np.save(tmp / f"{split}-images.npy", image_set.images, allow_pickle=False)
            np.save(tmp / f"{split}-labels.npy", image_set.labels, allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta))
        target = root / key
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- argument checks -----------------------------------------------------------------------

def _size(size: int | Sequence[int]) -> tuple[int, int]:
    value = [size, size] if isinstance(size, int) else list(size)
    if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int | np.integer)
                              or v < 1 for v in value):
        raise ConfigError(f"image size {size!r} must be [height, width] with two integers >= 1 "
                          "(or one integer for a square)")
    return int(value[0]), int(value[1])


def _mode(channels: int) -> str:
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ConfigError(f"image channels {channels!r} must be 1 (grey) or 3 (RGB)")
    return "L" if channels == 1 else "RGB"


def _floats(value: Sequence[float] | float) -> list[float]:
    return [float(value)] if isinstance(value, int | float) else [float(v) for v in value]

