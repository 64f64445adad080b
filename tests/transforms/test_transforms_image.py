"""Image steps against a straightforward Pillow/numpy reference, on made and on real MNIST PNGs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from transforms_support import (
    batch,
    encode,
    encode_image,
    jpeg_claiming,
    mnist_files,
    png_claiming,
)

from shipyard.transforms import (
    CenterCrop,
    ImageDecode,
    Layout,
    Normalize,
    Resize,
    StepConfigError,
    ToDtype,
    TransformError,
    apply_steps,
    build_steps,
)

RNG = np.random.default_rng(7)


def _rgb(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _reference(data: bytes, mode: str) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert(mode))


# -- image_decode -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_decode_png_is_lossless_and_jpeg_matches_pillow(mode: str) -> None:
    pixels = [_rgb(9, 13), _rgb(9, 13)]
    pngs = [encode(p) for p in pixels]
    jpeg = encode(pixels[0], "JPEG", quality=90)
    out = ImageDecode(mode=mode)(batch(*pngs, jpeg))
    assert out.dtype == np.uint8
    assert out.shape == ((3, 9, 13) if mode == "L" else (3, 9, 13, 3))
    if mode == "RGB":
        np.testing.assert_array_equal(out[0], pixels[0])
        np.testing.assert_array_equal(out[1], pixels[1])
    for i, data in enumerate([*pngs, jpeg]):
        np.testing.assert_array_equal(out[i], _reference(data, mode))


def test_decode_converts_other_modes_without_warnings() -> None:
    rgba = Image.fromarray(RNG.integers(0, 256, (6, 5, 4), dtype=np.uint8), "RGBA")
    palette = Image.fromarray(_rgb(6, 5)).convert("P")
    palette.info["transparency"] = bytes(range(256))  # Pillow warns converting this to RGB
    cmyk = Image.fromarray(_rgb(6, 5)).convert("CMYK")
    items = [encode_image(rgba), encode_image(palette), encode_image(cmyk, "JPEG")]
    out = ImageDecode(mode="RGB")(batch(*items))  # warnings are errors in this suite
    np.testing.assert_array_equal(out[0], np.asarray(rgba)[..., :3])
    with Image.open(io.BytesIO(items[1])) as image:
        image.info.pop("transparency", None)
        np.testing.assert_array_equal(out[1], np.asarray(image.convert("RGB")))
    np.testing.assert_array_equal(out[2], _reference(items[2], "RGB"))


def test_decode_scales_16_bit_grey_instead_of_clipping() -> None:
    wide = np.array([[0, 255, 256, 40000, 65535]], dtype=np.uint16)
    out = ImageDecode(mode="L")(batch(encode(wide)))
    np.testing.assert_array_equal(out[0], [[0, 0, 1, 156, 255]])


def test_images_of_different_sizes_make_a_ragged_batch_that_resize_resolves() -> None:
    sizes = [(10, 12), (20, 8), (10, 12)]
    pixels = [_rgb(h, w) for h, w in sizes]
    decoded = ImageDecode()(batch(*(encode(p) for p in pixels)))
    assert decoded.dtype == object and decoded.shape == (3,)
    assert [item.shape for item in decoded] == [(h, w, 3) for h, w in sizes]
    with pytest.raises(TransformError) as caught:
        ToDtype()(decoded)
    assert caught.value.index is None
    assert "10x12x3 (item 0) and 20x8x3 (item 1)" in str(caught.value)
    assert "declare resize or center_crop" in str(caught.value)
    resized = Resize(size=[6, 6])(decoded)
    assert resized.shape == (3, 6, 6, 3)
    for i, p in enumerate(pixels):
        expected = np.asarray(Image.fromarray(p).resize((6, 6), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(resized[i], expected)


# -- the MNIST pipeline against Pillow + numpy ---------------------------------------------------

def test_mnist_pipeline_matches_a_pillow_numpy_reference() -> None:
    files = mnist_files()
    steps = build_steps([
        {"image_decode": {"mode": "L"}},
        {"resize": {"size": [32, 32]}},
        {"to_dtype": {"dtype": "float32", "scale": 1 / 255}},
        {"normalize": {"mean": [0.1307], "std": [0.3081]}},
        {"layout": {"to": "NCHW"}},
    ])
    out = apply_steps(steps, batch(*(f.read_bytes() for f in files)))
    assert out.shape == (len(files), 1, 32, 32) and out.dtype == np.float32
    assert out.flags.c_contiguous
    for i, file in enumerate(files):
        with Image.open(file) as image:
            pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BILINEAR))
        expected = (pixels.astype(np.float32) * np.float32(1 / 255) - np.float32(0.1307)) \
            / np.float32(0.3081)
        np.testing.assert_allclose(out[i, 0], expected, rtol=0, atol=1e-6)
    # the images differ, so a pipeline that mixed items up would fail above
    assert len({out[i].tobytes() for i in range(len(files))}) == len(files)


def test_mnist_at_its_own_size_is_not_resampled() -> None:
    file = mnist_files(1)[3]
    out = Resize(size=28)(ImageDecode(mode="L")(batch(file.read_bytes())))
    with Image.open(file) as image:
        np.testing.assert_array_equal(out[0], np.asarray(image))


# -- resize, center_crop ------------------------------------------------------------------------

@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
def test_resize_matches_pillow(interpolation: str) -> None:
    pixels = np.stack([_rgb(17, 11) for _ in range(3)])
    out = Resize(size=[7, 9], interpolation=interpolation)(pixels)
    resample = Image.Resampling[interpolation.upper()]
    for i in range(3):
        expected = np.asarray(Image.fromarray(pixels[i]).resize((9, 7), resample))
        np.testing.assert_array_equal(out[i], expected)
    grey = pixels[..., 0]
    out_grey = Resize(size=[7, 9], interpolation=interpolation)(grey)
    assert out_grey.shape == (3, 7, 9)
    np.testing.assert_array_equal(
        out_grey[1], np.asarray(Image.fromarray(grey[1]).resize((9, 7), resample))
    )


def test_resize_of_floats_is_per_channel_float32() -> None:
    floats = RNG.random((2, 10, 10, 3))
    out = Resize(size=[5, 4])(floats)
    assert out.dtype == np.float32 and out.shape == (2, 5, 4, 3)
    plane = Image.fromarray(floats[1, :, :, 2].astype(np.float32))
    expected = np.asarray(plane.resize((4, 5), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out[1, :, :, 2], expected)


def test_center_crop_matches_slicing_with_rounded_offsets() -> None:
    pixels = np.arange(2 * 7 * 9, dtype=np.uint8).reshape(2, 7, 9)
    out = CenterCrop(size=[4, 4])(pixels)
    top, left = round(3 / 2), round(5 / 2)  # 2 and 2: the same rounding as torchvision
    np.testing.assert_array_equal(out, pixels[:, top:top + 4, left:left + 4])
    ragged = batch(_rgb(6, 6), _rgb(9, 5))
    cropped = CenterCrop(size=4)(ragged)
    np.testing.assert_array_equal(cropped[0], ragged[0][1:5, 1:5])
    np.testing.assert_array_equal(cropped[1], ragged[1][2:6, 0:4])


def test_center_crop_refuses_a_small_image_by_index() -> None:
    with pytest.raises(TransformError) as caught:
        CenterCrop(size=[5, 5])(batch(_rgb(8, 8), _rgb(8, 8), _rgb(4, 9)))
    assert caught.value.index == 2
    assert str(caught.value) == ("item 2: image 4x9 is smaller than center_crop.size 5x5; "
                                 "declare resize before center_crop")


# -- to_dtype, normalize, layout ---------------------------------------------------------------

def test_to_dtype_scales_in_the_target_dtype() -> None:
    pixels = RNG.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    out = ToDtype(dtype="float32", scale=1 / 255)(pixels)
    np.testing.assert_array_equal(out, pixels.astype(np.float32) * np.float32(1 / 255))
    assert ToDtype(dtype="int64")(pixels).dtype == np.int64


def test_to_dtype_refuses_nan_into_integers_by_index() -> None:
    floats = np.ones((4, 2), np.float32)
    floats[2, 1] = np.nan
    with pytest.raises(TransformError) as caught:
        ToDtype(dtype="int64")(floats)
    assert caught.value.index == 2 and "NaN or infinity" in str(caught.value)
    with pytest.raises(StepConfigError, match=r"to_dtype\.scale: must be 1 for the integer"):
        ToDtype(dtype="uint8", scale=2)


def test_normalize_per_channel_on_either_axis() -> None:
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    nhwc = RNG.random((2, 5, 6, 3)).astype(np.float32)
    out = Normalize(mean=mean, std=std)(nhwc)
    expected = (nhwc - np.float32(mean)) / np.float32(std)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    out_chw = Normalize(mean=mean, std=std, channel_axis=1)(nchw)
    np.testing.assert_allclose(out_chw, expected.transpose(0, 3, 1, 2), rtol=1e-6)
    with pytest.raises(TransformError, match=r"3 channels on axis -1, got shape \[2, 3, 5, 6\]"):
        Normalize(mean=mean, std=std)(nchw)
    assert Normalize(mean=0.5, std=2)(np.full((1, 2, 2), 255, np.uint8)).dtype == np.float32


@pytest.mark.parametrize(("to", "source", "axes"), [("NCHW", "NHWC", (0, 3, 1, 2)),
                                                    ("NHWC", "NCHW", (0, 2, 3, 1)),
                                                    ("NHWC", "NHWC", (0, 1, 2, 3))])
def test_layout_transposes_and_is_contiguous(to: str, source: str, axes: tuple[int, ...]) -> None:
    array = RNG.random((2, 3, 4, 5))
    out = Layout(to=to, source=source)(array)
    np.testing.assert_array_equal(out, array.transpose(axes))
    assert out.flags.c_contiguous


def test_layout_gives_grey_images_a_channel() -> None:
    grey = RNG.random((2, 3, 4))
    np.testing.assert_array_equal(Layout(to="NCHW")(grey), grey[:, None])
    np.testing.assert_array_equal(Layout(to="NHWC")(grey), grey[..., None])


# -- bad items: each refused with its index and what was wrong ---------------------------------

GOOD = encode(np.zeros((4, 4), np.uint8))


def _refused(item: object, at: int = 2, **params: object) -> TransformError:
    items = [GOOD] * 4
    items[at] = item
    with pytest.raises(TransformError) as caught:
        ImageDecode(mode="L", **params)(batch(*items))  # type: ignore[arg-type]
    assert caught.value.index == at
    assert str(caught.value).startswith(f"item {at}: ")
    return caught.value


def test_bytes_that_are_no_image() -> None:
    error = _refused(b"this is plain text, not an image")
    assert "not a PNG or JPEG image" in str(error)
    gif = encode_image(Image.new("L", (2, 2)), "GIF")
    assert "not a PNG or JPEG image (unknown signature b'GIF8" in str(_refused(gif, at=0))


def test_empty_bytes_and_non_bytes_items() -> None:
    assert str(_refused(b"", at=1)) == "item 1: empty bytes; expected a PNG or JPEG image"
    assert "got str" in str(_refused("a string", at=3))
    assert "got NoneType" in str(_refused(None, at=0))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images(fmt: str) -> None:
    data = encode(_rgb(64, 64), fmt)
    # (the last 20 bytes of a PNG are checksums and IEND: Pillow decodes it without them)
    for cut in (len(data) // 2, 40, len(data) - 40):
        error = _refused(data[:cut], at=1)
        assert fmt in str(error), str(error)


@pytest.mark.parametrize("make", [png_claiming, jpeg_claiming])
def test_decompression_bomb_is_refused_from_the_header(make: object) -> None:
    bomb = make(30_000, 30_000)  # type: ignore[operator]
    # Pillow itself sees a bomb here (beyond twice its global limit) ...
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb))
    limit = Image.MAX_IMAGE_PIXELS
    # ... this step refuses it as a TransformError, by its own max_pixels, not Pillow's global
    error = _refused(bomb, at=3)
    assert "image claims 30000x30000 = 900000000 pixels, more than max_pixels=16777216" \
        in str(error)
    small = make(300, 300)  # type: ignore[operator]
    assert "more than max_pixels=10000" in str(_refused(small, at=0, max_pixels=10_000))
    assert limit == Image.MAX_IMAGE_PIXELS


def test_a_header_between_pillows_warning_and_error_limits_raises_no_warning() -> None:
    bomb = png_claiming(10_000, 10_000)  # 1e8 pixels: Pillow's Image.open warns (an error here)
    with pytest.raises(Image.DecompressionBombWarning):
        Image.open(io.BytesIO(bomb))
    assert "more than max_pixels" in str(_refused(bomb))


def test_corrupted_images_never_escape_as_anything_but_transform_error() -> None:
    rng = np.random.default_rng(0)
    originals = [encode(_rgb(16, 16)), encode(_rgb(16, 16), "JPEG")]
    step = ImageDecode(mode="RGB")
    outcomes = {"decoded": 0, "refused": 0}
    for trial in range(300):
        data = bytearray(originals[trial % 2])
        for position in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
            data[position] = int(rng.integers(0, 256))
        try:
            out = step(batch(bytes(data)))
            assert out.shape[0] == 1 and out.dtype == np.uint8
            outcomes["decoded"] += 1
        except TransformError as error:
            assert error.index == 0
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["decoded"] > 0


def test_image_steps_refuse_bad_parameters_by_name() -> None:
    cases = [
        (lambda: ImageDecode(mode="CMYK"),
         "image_decode.mode: must be one of 'L', 'RGB'; got 'CMYK'"),
        (lambda: ImageDecode(max_pixels=0), "image_decode.max_pixels: must be an integer >= 1"),
        (lambda: Resize(size=[0, 3]), "resize.size: must be [height, width]"),
        (lambda: Resize(size=[3, 3], interpolation="area"), "resize.interpolation: must be one of"),
        (lambda: Normalize(mean=[0.5], std=[0]), "normalize.std: must be a non-empty list"),
        (lambda: Normalize(mean=[1, 2], std=[1, 2, 3]), "normalize.std: must have one number"),
        (lambda: Layout(to="CHW"), "layout.to: must be one of 'NCHW', 'NHWC'; got 'CHW'"),
    ]
    for make, message in cases:
        with pytest.raises(StepConfigError) as caught:
            make()
        assert str(caught.value).startswith(message), str(caught.value)
