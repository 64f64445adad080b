"""Image sources: IDX files (real Fashion-MNIST and hostile ones), folders, digits, the cache,
and parity with the server's preprocessing steps."""

from __future__ import annotations

import gzip
import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SHARED
from PIL import Image

from shipyard.data import image as image_module
from shipyard.data.errors import ConfigError, DataError
from shipyard.data.idx import read_idx
from shipyard.data.image import (
    FASHION_MNIST_CLASSES,
    load_image_source,
    preprocess_steps,
    to_tensor,
)
from shipyard.transforms import apply_steps, build_steps

FASHION = Path("/usr/share/datasets/fashion-mnist")
MNIST = next((base / "data" / "mnist_png" for base in (SHARED, ROOT.parent.parent / "shared")
              if (base / "data" / "mnist_png").is_dir()), SHARED / "data" / "mnist_png")

needs_fashion = pytest.mark.skipif(
    not FASHION.is_dir(),
    reason="Fashion-MNIST is not installed: scripts/install_system_deps.sh (dataset-fashion-mnist)")
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason=f"{MNIST} is missing")


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx_pair(folder: Path, images: np.ndarray, labels: np.ndarray,
                   prefix: str = "train", gz: bool = False) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for kind, ndim, array in (("images", 3, images), ("labels", 1, labels)):
        data = idx_bytes(array)
        name = f"{prefix}-{kind}-idx{ndim}-ubyte" + (".gz" if gz else "")
        (folder / name).write_bytes(gzip.compress(data) if gz else data)
        out.append(folder / name)
    return out[0], out[1]


# --- IDX -----------------------------------------------------------------------------------

@needs_fashion
def test_fashion_mnist_idx_files_parse() -> None:
    names = sorted(p.name for p in FASHION.iterdir())
    assert "train-images-idx3-ubyte.gz" in names
    images = read_idx(FASHION / "train-images-idx3-ubyte.gz", ndim=3)
    labels = read_idx(FASHION / "train-labels-idx1-ubyte.gz", ndim=1)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.min() == 0 and labels.max() == 9
    assert labels[0] == 9  # the first training image is an ankle boot
    assert np.bincount(labels).tolist() == [6000] * 10


@needs_fashion
def test_fashion_mnist_source(tmp_path: Path) -> None:
    sets = load_image_source(f"idx:{FASHION}", size=28, channels=1, cache_dir=tmp_path)
    assert list(sets) == ["train", "test"]
    train, test = sets["train"], sets["test"]
    assert train.images.shape == (60000, 28, 28, 1) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 28, 28, 1)
    assert train.labels.dtype == np.int64 and test.labels[0] == 9
    assert train.class_names == FASHION_MNIST_CLASSES and train.class_names[9] == "Ankle boot"
    assert train.files is None and train.source == f"idx:{FASHION}"
    raw = read_idx(FASHION / "train-images-idx3-ubyte.gz")
    assert np.array_equal(train.images[..., 0], raw)


def test_idx_pair_of_files_gz_and_plain(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    labels = np.array([0, 1, 2, 2, 1, 0, 3], dtype=np.uint8)
    for gz in (False, True):
        folder = tmp_path / f"gz{gz}"
        img, lab = write_idx_pair(folder, images, labels, gz=gz)
        sets = load_image_source(f"idx:{img},{lab}", size=(5, 4), cache=False)
        assert list(sets) == ["all"]
        assert np.array_equal(sets["all"].images[..., 0], images)
        assert sets["all"].class_names == ("0", "1", "2", "3")
        folder_sets = load_image_source(f"idx:{folder}", size=(5, 4), channels=3, cache=False)
        assert list(folder_sets) == ["train"]
        rgb = folder_sets["train"].images
        assert rgb.shape == (7, 5, 4, 3) and np.array_equal(rgb[..., 2], images)


def test_idx_other_types_and_byte_order(tmp_path: Path) -> None:
    array = np.arange(6, dtype=np.int32).reshape(2, 3) - 3
    (tmp_path / "x").write_bytes(idx_bytes(array, code=0x0C))
    out = read_idx(tmp_path / "x")
    assert out.dtype == np.int32 and out.dtype.isnative and np.array_equal(out, array)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "shorter than the 4-byte header"),
    (b"\x00\x00\x08", "shorter than the 4-byte header"),
    (b"\x01\x02\x08\x03" + b"\x00" * 12, "bad magic number 0x01020803"),
    (b"\x00\x00\x42\x03" + b"\x00" * 12, "bad magic number"),
    (b"\x00\x00\x08\x00", "bad magic number"),
    (b"\x00\x00\x08\x03\x00\x00", "header alone needs 16"),
    (struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 28, 28) + b"\x00" * 100, "is truncated"),
    (struct.pack(">BBBBIII", 0, 0, 8, 3, 1, 2, 2) + b"\x00" * 5, "longer than its header"),
    (struct.pack(">BBBBIII", 0, 0, 8, 3, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), "is truncated"),
])
def test_hostile_idx_files_are_refused(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "hostile-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in info.value.message


def test_damaged_gzip_and_wrong_rank(tmp_path: Path) -> None:
    images = np.zeros((3, 2, 2), np.uint8)
    packed = gzip.compress(idx_bytes(images))
    (tmp_path / "cut.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="damaged gzip"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "img").write_bytes(idx_bytes(images))
    with pytest.raises(DataError, match="has 3 dimensions, expected 1"):
        read_idx(tmp_path / "img", ndim=1)


def test_idx_pair_mismatch_and_swapped(tmp_path: Path) -> None:
    img, lab = write_idx_pair(tmp_path / "a", np.zeros((3, 2, 2), np.uint8),
                              np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"hold 3 images but labels .* hold 4"):
        load_image_source(f"idx:{img},{lab}", size=2, cache=False)
    with pytest.raises(DataError, match="is it the other file"):
        load_image_source(f"idx:{lab},{img}", size=2, cache=False)


def test_idx_folder_half_a_pair(tmp_path: Path) -> None:
    _, lab = write_idx_pair(tmp_path, np.zeros((3, 2, 2), np.uint8), np.zeros(3, np.uint8))
    lab.unlink()
    with pytest.raises(ConfigError, match="no matching labels"):
        load_image_source(f"idx:{tmp_path}", size=2, cache=False)
    with pytest.raises(ConfigError, match="is one file; give idx:IMAGES,LABELS"):
        load_image_source(f"idx:{tmp_path / 'train-images-idx3-ubyte'}", size=2, cache=False)


# --- bad sources ---------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "message"), [
    ("", "is empty"),
    ("sklearn:iris", "sklearn:digits"),
    ("idx:/nonexistent/fashion-mnist", "install the Debian package dataset-fashion-mnist"),
    ("idx:/nonexistent/a,/nonexistent/b", "IDX file /nonexistent/a does not exist"),
    ("idx:/a,/b,/c", "idx:FOLDER or idx:IMAGES,LABELS"),
    ("/nonexistent/images", "image folder /nonexistent/images does not exist"),
])
def test_bad_sources_name_the_path_and_the_fix(source: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_image_source(source, size=28, cache=False)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="channels 2 must be 1"):
        load_image_source("sklearn:digits", size=8, channels=2, cache=False)
    with pytest.raises(ConfigError, match=r"size \[0, 8\]"):
        load_image_source("sklearn:digits", size=[0, 8], cache=False)
    with pytest.raises(ConfigError, match="interpolation 'cubic'"):
        load_image_source("sklearn:digits", size=8, interpolation="cubic", cache=False)
    with pytest.raises(ConfigError, match="class_names has 2 names"):
        load_image_source("sklearn:digits", size=8, class_names=["a", "b"], cache=False)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        load_image_source(str(tmp_path / "file.txt"), size=8, cache=False)


def test_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no class subfolders"):
        load_image_source(str(tmp_path), size=8, cache=False)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"class folder .*cat holds no PNG or JPEG"):
        load_image_source(str(tmp_path), size=8, cache=False)
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"cannot use image .*broken.png: not a valid PNG"):
        load_image_source(str(tmp_path), size=8, cache=False)
    (tmp_path / "train").mkdir()
    with pytest.raises(ConfigError, match=r"mixes split folders \(train\) with other folders "
                                          r"\(cat\)"):
        load_image_source(str(tmp_path), size=8, cache=False)


# --- folders -------------------------------------------------------------------------------

def small_mnist(tmp_path: Path, per_class: int = 20) -> Path:
    """A copy of part of mnist_png: train/<digit>/ and test/<digit>/, ``per_class`` each."""
    root = tmp_path / "mnist"
    for split, count in (("train", per_class), ("test", per_class // 2)):
        for class_dir in sorted((MNIST / split).iterdir()):
            target = root / split / class_dir.name
            target.mkdir(parents=True)
            for f in sorted(class_dir.glob("*.png"))[:count]:
                shutil.copy2(f, target / f.name)
    return root


@needs_mnist
def test_folder_source_with_splits(tmp_path: Path) -> None:
    root = small_mnist(tmp_path)
    sets = load_image_source(str(root), size=28, channels=1, cache_dir=tmp_path / "cache")
    assert list(sets) == ["train", "test"]
    train = sets["train"]
    assert train.images.shape == (200, 28, 28, 1) and train.images.dtype == np.uint8
    assert train.class_names == tuple(str(i) for i in range(10))
    assert np.bincount(train.labels).tolist() == [20] * 10
    assert len(sets["test"]) == 100 and sets["test"].class_names == train.class_names
    assert train.files is not None and len(train.files) == 200
    first = train.files[0]
    assert first.startswith("train/0/") and first.endswith(".png")
    pixels = np.asarray(Image.open(root / first).convert("L"))
    assert np.array_equal(train.images[0, ..., 0], pixels)
    for name, label in zip(train.files, train.labels, strict=True):
        assert name.split("/")[1] == train.class_names[label]


@needs_mnist
def test_real_mnist_folder_resized_to_rgb(tmp_path: Path) -> None:
    sets = load_image_source(str(MNIST), size=(14, 16), channels=3, cache_dir=tmp_path)
    assert sets["train"].images.shape == (3000, 14, 16, 3)
    assert sets["test"].images.shape == (1000, 14, 16, 3)
    grey = sets["train"].images
    assert np.array_equal(grey[..., 0], grey[..., 1])  # grey PNGs become equal R, G, B


def colour_jpegs(root: Path) -> Path:
    """Two classes of colour JPEGs of several sizes, no split folders; plus a stray file."""
    rng = np.random.default_rng(1)
    for name, colour, sizes in (("red", (220, 30, 30), [(40, 30), (33, 47)]),
                                ("blue", (20, 40, 230), [(64, 64), (21, 19), (50, 10)])):
        (root / name).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            noise = rng.integers(-10, 10, (h, w, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"img{i}.JPG", "JPEG", quality=90)
    (root / "red" / "README").write_text("not an image")
    return root


def test_colour_jpeg_folder_resized(tmp_path: Path) -> None:
    root = colour_jpegs(tmp_path / "jpegs")
    sets = load_image_source(str(root), size=(24, 20), channels=3, cache=False)
    assert list(sets) == ["all"]
    data = sets["all"]
    assert data.images.shape == (5, 24, 20, 3)
    assert data.class_names == ("blue", "red") and data.labels.tolist() == [0, 0, 0, 1, 1]
    means = data.images.reshape(5, -1, 3).mean(axis=1)
    assert (means[:3, 2] > 180).all() and (means[3:, 0] > 180).all()
    grey = load_image_source(str(root), size=(24, 20), channels=1, cache=False)["all"]
    assert grey.images.shape == (5, 24, 20, 1)


# --- scikit-learn's digits -----------------------------------------------------------------

def test_sklearn_digits(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    sets = load_image_source("sklearn:digits", size=8, cache_dir=tmp_path)
    digits = sets["all"]
    assert digits.images.shape == (1797, 8, 8, 1) and digits.images.max() == 255
    expected = np.rint(load_digits().images * 255 / 16).astype(np.uint8)
    assert np.array_equal(digits.images[..., 0], expected)
    assert digits.labels[:10].tolist() == list(range(10))
    assert digits.class_names == tuple(str(i) for i in range(10)) and digits.files is None
    big = load_image_source("sklearn:digits", size=28, channels=3, cache_dir=tmp_path)["all"]
    assert big.images.shape == (1797, 28, 28, 3)


# --- cache ---------------------------------------------------------------------------------

def test_cache_hit_does_not_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = colour_jpegs(tmp_path / "jpegs")
    cache = tmp_path / "cache"
    calls: list[int] = []
    real = image_module._decode

    def spy(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(image_module, "_decode", spy)
    first = load_image_source(str(root), size=16, channels=3, cache_dir=cache)["all"]
    assert calls == [1] and not first.from_cache
    assert len(list(cache.glob("*/meta.json"))) == 1
    second = load_image_source(str(root), size=16, channels=3, cache_dir=cache)["all"]
    assert calls == [1] and second.from_cache
    assert np.array_equal(first.images, second.images)
    assert first.files == second.files and first.class_names == second.class_names
    # another size or channel count is another entry
    load_image_source(str(root), size=12, channels=3, cache_dir=cache)
    assert calls == [1, 1]
    # a changed file (new size and mtime) invalidates the entry
    img = root / "red" / "img0.JPG"
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(img, "JPEG")
    third = load_image_source(str(root), size=16, channels=3, cache_dir=cache)["all"]
    assert calls == [1, 1, 1] and not third.from_cache
    # a damaged entry is rebuilt, not trusted
    for meta in cache.glob("*/meta.json"):
        meta.write_text("{not json")
    fourth = load_image_source(str(root), size=16, channels=3, cache_dir=cache)["all"]
    assert calls == [1, 1, 1, 1] and np.array_equal(fourth.images, third.images)
    # cache=False neither reads nor writes
    entries = sorted(p.name for p in cache.iterdir())
    load_image_source(str(root), size=20, channels=3, cache_dir=cache, cache=False)
    assert calls == [1, 1, 1, 1, 1] and sorted(p.name for p in cache.iterdir()) == entries


def test_default_cache_dir_from_environment(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_CACHE_DIR", str(tmp_path / "c"))
    load_image_source("sklearn:digits", size=8)
    assert len(list((tmp_path / "c").glob("*/all-images.npy"))) == 1


# --- parity with the server's steps --------------------------------------------------------

@needs_mnist
@pytest.mark.parametrize(("size", "channels", "mean", "std"), [
    ((28, 28), 1, None, None),
    ((20, 24), 1, [0.1307], [0.3081]),
    ((32, 32), 3, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]),
])
def test_training_tensor_equals_served_tensor(tmp_path: Path, size: tuple[int, int],
                                              channels: int, mean: list[float] | None,
                                              std: list[float] | None) -> None:
    root = small_mnist(tmp_path, per_class=3)
    colour = colour_jpegs(root / "train" / "colour")  # nested: a colour class inside train/
    assert colour.is_dir()
    train = load_image_source(str(root), size=size, channels=channels,
                              cache_dir=tmp_path / "cache")["train"]
    served_steps = build_steps(preprocess_steps(size, channels, mean, std))
    assert train.files is not None
    batch = np.empty(len(train.files), dtype=object)
    for i, name in enumerate(train.files):
        batch[i] = (root / name).read_bytes()
    served = apply_steps(served_steps, batch)
    trained = to_tensor(train.images, mean, std)
    assert isinstance(served, np.ndarray)
    assert trained.shape == (len(train.files), channels, *size) and trained.dtype == np.float32
    assert np.array_equal(served, trained)


def test_digits_parity_through_png(tmp_path: Path) -> None:
    """An IDX/digits image saved as PNG and served gives the training tensor."""
    digits = load_image_source("sklearn:digits", size=20, channels=3, cache=False)["all"]
    small = load_image_source("sklearn:digits", size=8, cache=False)["all"]
    buffer = io.BytesIO()
    Image.fromarray(small.images[5, ..., 0]).save(buffer, "PNG")
    batch = np.empty(1, dtype=object)
    batch[0] = buffer.getvalue()
    served = apply_steps(build_steps(preprocess_steps(20, 3, 0.5, 0.5)), batch)
    assert np.array_equal(served, to_tensor(digits.images[5:6], 0.5, 0.5))


def test_to_tensor_and_steps() -> None:
    images = np.full((2, 3, 4, 1), 255, np.uint8)
    out = to_tensor(images, [0.5], [0.25])
    assert out.shape == (2, 1, 3, 4) and np.allclose(out, 2.0)
    assert np.allclose(to_tensor(images), 1.0)
    with pytest.raises(ConfigError, match="both mean and std"):
        to_tensor(images, [0.5], None)
    with pytest.raises(ConfigError, match="one mean and std per channel"):
        to_tensor(images, [0.5, 0.5, 0.5], [1, 1, 1])
    steps = preprocess_steps(28, 1, [0.5], [0.5])
    assert [next(iter(s)) for s in steps] == ["image_decode", "resize", "to_dtype", "normalize",
                                             "layout"]
    assert steps[0] == {"image_decode": {"mode": "L"}}


def test_subset_keeps_files_and_names() -> None:
    digits = load_image_source("sklearn:digits", size=8, cache=False)["all"]
    part = digits.subset([3, 1], split="val")
    assert part.split == "val" and part.labels.tolist() == [3, 1] and len(part) == 2
    assert part.size == (8, 8) and part.channels == 1 and part.num_classes == 10


# --- torch Dataset / DataLoader ------------------------------------------------------------

def test_loader_batches_match_to_tensor() -> None:
    import torch

    from shipyard.data.image_loader import ImageTensorDataset, make_image_loader

    digits = load_image_source("sklearn:digits", size=8, cache=False)["all"]
    dataset = ImageTensorDataset(digits, mean=[0.3], std=[0.4])
    x, y = dataset[7]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and int(y) == digits.labels[7]
    assert np.array_equal(x.numpy(), to_tensor(digits.images[7:8], [0.3], [0.4])[0])
    loader = make_image_loader(digits, batch_size=100, mean=[0.3], std=[0.4])
    batches = list(loader)
    assert len(batches) == 18 and batches[0][0].shape == (100, 1, 8, 8)
    assert batches[-1][0].shape == (97, 1, 8, 8) and batches[0][1].dtype == torch.int64
    whole = torch.cat([b[0] for b in batches])
    assert np.array_equal(whole.numpy(), to_tensor(digits.images, [0.3], [0.4]))
    # shuffling is repeatable from a seed and covers every image once
    first = torch.cat([b[1] for b in make_image_loader(digits, batch_size=64, shuffle=True,
                                                       seed=3)])
    again = torch.cat([b[1] for b in make_image_loader(digits, batch_size=64, shuffle=True,
                                                       seed=3)])
    assert torch.equal(first, again) and not torch.equal(first, torch.from_numpy(digits.labels))
    assert sorted(first.tolist()) == sorted(digits.labels.tolist())
    dropped = make_image_loader(digits, batch_size=100, drop_last=True)
    assert len(dropped) == 17
    with pytest.raises(ConfigError, match="per channel"):
        ImageTensorDataset(digits, mean=[0.1, 0.2, 0.3], std=[1, 1, 1])


def test_loader_with_workers() -> None:
    from shipyard.data.image_loader import make_image_loader

    digits = load_image_source("sklearn:digits", size=8, cache=False)["all"].subset(range(200))
    batches = list(make_image_loader(digits, batch_size=50, workers=2))
    assert [len(b[1]) for b in batches] == [50, 50, 50, 50]
    assert np.array_equal(np.concatenate([b[0].numpy() for b in batches]),
                          to_tensor(digits.images))
