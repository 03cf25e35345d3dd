"""The shared preprocessing: every accepted format, mode and size; EXIF orientation; every bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from partcheck.errors import InvalidImage
from services.predict.preprocess import preprocess
from tests.images import png_bomb, truncated
from tests.services.predict.odd_images import absurd_strip_offset_tiff, cielab_tiff

pytestmark = pytest.mark.unit


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _gradient(w: int, h: int) -> Image.Image:
    """Bright left half, dark right half, with a vertical ramp: orientation is visible."""
    arr = np.zeros((h, w), dtype=np.uint8)
    arr[:, : w // 2] = 220
    arr[:, w // 2 :] = 40
    arr += (np.arange(h)[:, None] * 30 // max(h, 1)).astype(np.uint8)
    return Image.fromarray(arr)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "TIFF"])
@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("side", [64, 300, 512, 1024])
def test_every_format_mode_and_size_gives_the_same_shape(fmt: str, mode: str, side: int) -> None:
    img = _gradient(side, side).convert(mode)
    x = preprocess(_encode(img, fmt), 128)
    assert x.shape == (128, 128)
    assert x.dtype == np.float32
    assert float(x.min()) >= 0.0
    assert float(x.max()) <= 1.0
    # Left half stays bright, right half dark: nothing transposed or inverted.
    assert x[:, :48].mean() > 0.7
    assert x[:, 80:].mean() < 0.35


def test_real_photo_from_samples(sample_images: dict[str, list[object]]) -> None:
    path = sample_images["ok"][0]
    x = preprocess(path.read_bytes(), 128)  # type: ignore[attr-defined]
    assert x.shape == (128, 128)
    assert 0.2 < float(x.mean()) < 0.8


def test_same_photo_at_another_resolution_gives_nearly_the_same_array(
    sample_images: dict[str, list[object]],
) -> None:
    data = sample_images["defect"][0].read_bytes()  # type: ignore[attr-defined]
    big = Image.open(io.BytesIO(data)).resize((512, 512), Image.Resampling.LANCZOS)
    a = preprocess(data, 128)
    b = preprocess(_encode(big, "PNG"), 128)
    assert float(np.abs(a - b).mean()) < 0.02


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "1", "I;16"])
def test_other_modes_are_reduced_to_luminance(mode: str) -> None:
    base = _gradient(200, 200)
    if mode == "I;16":
        img = Image.fromarray((np.asarray(base, dtype=np.uint16) * 257).astype(np.uint16))
        assert img.mode.startswith("I;16")
        fmt = "PNG"
    else:
        img = base.convert(mode)
        fmt = "TIFF" if mode == "CMYK" else "PNG"
    x = preprocess(_encode(img, fmt), 64)
    assert x.shape == (64, 64)
    # 16-bit is rescaled, not clipped to white.
    assert x[:, 40:].mean() < 0.5


def test_non_square_is_centre_cropped_not_squashed() -> None:
    arr = np.full((300, 400), 30, dtype=np.uint8)
    arr[100:200, 150:250] = 230  # a centred square stays square
    x = preprocess(_encode(Image.fromarray(arr), "PNG"), 90)
    bright = x > 0.5
    rows, cols = np.where(bright)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert abs(int(height) - int(width)) <= 2


@pytest.mark.parametrize(
    ("orientation", "transpose"),
    [
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_270),
        (8, Image.Transpose.ROTATE_90),
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_exif_orientation_is_applied(orientation: int, transpose: Image.Transpose) -> None:
    img = _gradient(256, 256)
    exif = Image.Exif()
    exif[0x0112] = orientation
    tagged = preprocess(_encode(img, "JPEG", exif=exif, quality=95), 64)
    upright = preprocess(_encode(img.transpose(transpose), "JPEG", quality=95), 64)
    plain = preprocess(_encode(img, "JPEG", quality=95), 64)
    assert float(np.abs(tagged - upright).mean()) < 0.02
    assert float(np.abs(tagged - plain).mean()) > 0.1


def test_empty_bytes_are_refused() -> None:
    with pytest.raises(InvalidImage, match="0 bytes"):
        preprocess(b"", 64)


def test_not_an_image_is_refused() -> None:
    with pytest.raises(InvalidImage, match="not a recognised image"):
        preprocess(b"hello, this is text" * 10, 64)


def test_truncated_jpeg_is_refused(sample_images: dict[str, list[object]]) -> None:
    data = sample_images["ok"][0].read_bytes()  # type: ignore[attr-defined]
    with pytest.raises(InvalidImage, match=r"truncated|corrupt"):
        preprocess(truncated(data), 64)


def test_corrupt_body_is_refused(sample_images: dict[str, list[object]]) -> None:
    data = bytearray(sample_images["ok"][0].read_bytes())  # type: ignore[attr-defined]
    data[200:] = b"\x00" * (len(data) - 200)
    with pytest.raises(InvalidImage):
        preprocess(bytes(data[: len(data) // 2]), 64)


def test_decompression_bomb_is_refused() -> None:
    with pytest.raises(InvalidImage, match="decompression bomb"):
        preprocess(png_bomb(), 64)


def test_pillow_bomb_warning_range_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Between MAX_IMAGE_PIXELS and twice that Pillow only warns; we refuse.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300 - 1)
    with pytest.raises(InvalidImage, match="decompression bomb"):
        preprocess(_encode(_gradient(300, 300), "PNG"), 64)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_unsupported_format_is_refused(fmt: str) -> None:
    with pytest.raises(InvalidImage, match="unsupported image format"):
        preprocess(_encode(_gradient(100, 100).convert("RGB"), fmt), 64)


def test_tiny_image_is_refused() -> None:
    with pytest.raises(InvalidImage, match="too small"):
        preprocess(_encode(_gradient(16, 16), "PNG"), 64)


def test_cielab_tiff_is_refused_with_its_colour_mode() -> None:
    with pytest.raises(InvalidImage, match="unsupported colour mode 'LAB'"):
        preprocess(cielab_tiff(), 64)


def test_tiff_with_an_absurd_strip_offset_is_refused() -> None:
    with pytest.raises(InvalidImage, match="corrupt or truncated"):
        preprocess(absurd_strip_offset_tiff(), 64)


def test_any_decoder_failure_is_an_invalid_image(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(img: Image.Image, in_place: bool = False) -> None:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    with pytest.raises(InvalidImage, match="RuntimeError: plugin bug"):
        preprocess(_encode(_gradient(64, 64), "PNG"), 64)


def test_running_out_of_memory_is_not_blamed_on_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    def starved(img: Image.Image, in_place: bool = False) -> None:
        raise MemoryError

    monkeypatch.setattr(ImageOps, "exif_transpose", starved)
    with pytest.raises(MemoryError):
        preprocess(_encode(_gradient(64, 64), "PNG"), 64)
