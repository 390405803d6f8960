"""Uploads decoded safely (every file made in memory with Pillow), the sample photos, and each model's own
preprocessing. No network."""
from __future__ import annotations

import io
import socket
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.images import SAMPLES, ImageError, load_image, preprocess, sample_image


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _sentence(msg: str) -> bool:
    # One sentence: it may start with the file name ("photo.png is ..."), ends with a full stop, one line.
    return len(msg) > 20 and msg.endswith(".") and "\n" not in msg and msg.count(". ") == 0


def _refused(data: bytes, filename: str, *words: str) -> str:
    with pytest.raises(ImageError) as e:
        load_image(data, filename)
    msg = str(e.value)
    assert _sentence(msg), msg
    for w in words:
        assert w in msg, msg
    return msg


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_1bit(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A 1-bit greyscale PNG; all-black rows unless ``idat`` is given (then only the header is honest)."""
    if idat is None:
        row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed bits
        idat = zlib.compress(row * height, 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


# -- accepted formats ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, ext, kw", [
    ("PNG", "png", {}), ("JPEG", "jpg", {"quality": 95}), ("WEBP", "webp", {"lossless": True}),
    ("BMP", "bmp", {}), ("TIFF", "tif", {}),
])
def test_round_trip(fmt, ext, kw):
    src = Image.new("RGB", (16, 8), (200, 40, 10))
    out = load_image(_bytes(src, fmt, **kw), f"photo.{ext}")
    assert out.mode == "RGB" and out.size == (16, 8)
    assert np.abs(np.asarray(out).astype(int) - [200, 40, 10]).max() <= 4


def test_format_by_content_not_extension():
    out = load_image(_bytes(Image.new("RGB", (4, 4), (0, 255, 0)), "PNG"), "really_a_png.jpg")
    assert out.getpixel((0, 0)) == (0, 255, 0)


def test_exif_orientation_6_rotates():
    src = Image.new("RGB", (40, 20), (0, 0, 255))
    src.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = src.getexif()
    exif[0x0112] = 6  # stored rotated: display after turning 90° clockwise
    out = load_image(_bytes(src, "JPEG", exif=exif, quality=95), "camera.jpg")
    assert out.size == (20, 40)
    a = np.asarray(out).astype(int)
    assert a[5, 10, 0] > 200 and a[5, 10, 2] < 60  # the red half is now on top
    assert a[35, 10, 2] > 200 and a[35, 10, 0] < 60


# -- modes -----------------------------------------------------------------------------------------------------
def test_rgba_composited_on_white():
    src = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    src.putpixel((0, 0), (255, 0, 0, 255))
    out = load_image(_bytes(src, "PNG"), "a.png")
    assert out.mode == "RGB"
    assert out.getpixel((1, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == (255, 0, 0)


def test_la_composited_on_white():
    src = Image.new("LA", (4, 4), (0, 0))
    out = load_image(_bytes(src, "PNG"), "a.png")
    assert out.getpixel((2, 2)) == (255, 255, 255)


def test_palette():
    src = Image.new("RGB", (8, 8), (10, 120, 250)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    out = load_image(_bytes(src, "PNG"), "p.png")
    assert out.mode == "RGB" and out.getpixel((3, 3)) == (10, 120, 250)


def test_grey_l():
    out = load_image(_bytes(Image.new("L", (5, 5), 77), "PNG"), "g.png")
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (77, 77, 77)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_scaled_not_clipped(fmt):
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
    src = Image.fromarray(np.tile(ramp, (4, 1)))
    assert src.mode.startswith("I;16")
    out = load_image(_bytes(src, fmt), f"ramp.{fmt.lower()}")
    a = np.asarray(out)[0, :, 0].astype(int)
    assert a[0] == 0 and a[-1] == 255
    assert np.all(np.diff(a) >= 0) and len(np.unique(a)) > 200  # a ramp, not a clipped step
    assert abs(a[128] - 128) <= 1


def test_32_bit_grey_keeps_its_values_and_float_grey_spans_0_to_1():
    ints = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.int32))  # mode "I": 0 and 1 are near-black greys
    out = load_image(_bytes(ints, "TIFF"), "ints.tif")
    assert ints.mode == "I" and np.asarray(out)[:, :, 0].tolist() == [[0, 1], [1, 0]]
    floats = Image.fromarray(np.array([[0.0, 1.0], [0.5, 0.0]], dtype=np.float32))  # mode "F" in [0, 1]: 0 → 255
    out = load_image(_bytes(floats, "TIFF"), "floats.tif")
    assert floats.mode == "F" and np.asarray(out)[:, :, 0].tolist() == [[0, 255], [128, 0]]


def test_cmyk():
    src = Image.new("CMYK", (6, 6), (0, 0, 0, 0))  # no ink: white
    for fmt in ("JPEG", "TIFF"):
        out = load_image(_bytes(src, fmt), "print." + fmt.lower())
        assert out.mode == "RGB" and min(out.getpixel((3, 3))) >= 250


def test_animated_webp_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = _bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    out = load_image(data, "anim.webp")
    assert out.mode == "RGB" and out.size == (8, 8) and out.getpixel((4, 4)) == (255, 0, 0)


def test_gif_refused_with_a_sentence():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    data = _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    msg = _refused(data, "anim.gif", "GIF", "PNG, JPEG, WebP, BMP or TIFF")
    assert msg.startswith("anim.gif")


# -- refused ---------------------------------------------------------------------------------------------------
def test_empty():
    _refused(b"", "nothing.png", "empty")


def test_more_than_20_mb():
    _refused(b"\x89PNG\r\n\x1a\n" + b"\0" * (20 * 1024 * 1024), "huge.png", "20 MB")


def test_not_an_image_named_png():
    _refused(b"hello, this is plain text and not a picture at all" * 10, "notes.png", "notes.png", "not an image")


def test_truncated_png():
    src = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = _bytes(src, "PNG")
    _refused(data[: len(data) // 2], "cut.png", "truncated")


def test_truncated_jpeg():
    src = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = _bytes(src, "JPEG")
    _refused(data[: len(data) // 2], "cut.jpg", "truncated")


def test_header_claiming_20000_by_20000_refused_before_decoding():
    small = _png_1bit(8, 8)
    data = _png_1bit(20000, 20000, idat=zlib.compress(b"\x00\x00" * 8))  # tiny body, huge header
    assert len(data) < 200 and load_image(small, "ok.png").size == (8, 8)
    t0 = time.perf_counter()
    _refused(data, "bomb.png", "40,000,000")
    assert time.perf_counter() - t0 < 1.0


def test_real_10000_by_10000_refused_before_decoding():
    data = _png_1bit(10000, 10000)  # a complete, valid 100 M pixel PNG of a few kB
    assert len(data) < 100_000
    before = Image.MAX_IMAGE_PIXELS
    t0 = time.perf_counter()
    _refused(data, "big.png", "big.png", "40,000,000")
    assert time.perf_counter() - t0 < 1.0
    assert Image.MAX_IMAGE_PIXELS == before  # no process-wide change


def test_just_under_the_limit_is_not_refused_by_size():
    # 6400×6250 = 40,000,000 pixels exactly: accepted (only the header would be checked if it were refused).
    data = _png_1bit(6400, 6250)
    out = load_image(data, "edge.png")
    assert out.size == (6400, 6250)


# -- samples ---------------------------------------------------------------------------------------------------
def test_samples():
    assert list(SAMPLES) == ["chelsea", "coffee", "astronaut", "rocket"]
    assert SAMPLES["chelsea"] == "Chelsea the cat"
    for name in SAMPLES:
        img = sample_image(name)
        assert isinstance(img, Image.Image) and img.mode == "RGB" and min(img.size) > 100
    with pytest.raises(ImageError):
        sample_image("nope")


# -- preprocessing ---------------------------------------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_preprocess_resnet50(no_network):
    x, how = preprocess(sample_image("chelsea"), "resnet50")
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    assert "232" in how and "224" in how and "ImageNet" in how and "\n" not in how
    assert how == "resize 232 (bilinear) → centre crop 224 → normalise with ImageNet mean/std"
    assert -3 < float(x.mean()) < 3


def test_preprocess_lenet5(no_network):
    x, how = preprocess(sample_image("coffee"), "lenet5")
    assert x.shape == (1, 1, 32, 32) and x.dtype == torch.float32
    assert "grayscale" in how and "32" in how and "0.5" in how
    assert float(x.min()) >= -1.0 - 1e-6 and float(x.max()) <= 1.0 + 1e-6


def test_preprocess_classic_rgb_accepts_non_rgb_input():
    x, how = preprocess(Image.new("L", (300, 200), 128), "zfnet")
    assert x.shape == (1, 3, 224, 224) and "ImageNet" in how


def test_one_resize_and_crop_path_for_every_page(no_network):
    # Receptive fields draws its boxes on `vis.center_crop` and feeds `vis.to_input`; the run pages feed a
    # network's own preprocessing: all of them are `images.resize_crop` (bilinear) with the weights' statistics.
    from explorer.images import resize_crop, resize_crop_normalise
    from explorer.network import Network
    from explorer.spec import ArchitectureSpec
    from explorer.vis import center_crop, to_input

    photo = sample_image("rocket")  # 427×640
    crop = center_crop(np.asarray(photo), 100)
    assert crop.shape == (100, 100, 3) and np.array_equal(crop, np.asarray(resize_crop(photo, (100, 100))))
    x, steps = resize_crop_normalise(photo, (3, 100, 100))
    assert torch.equal(to_input(np.asarray(photo), 100), x)
    assert steps == ("resize shorter side to 100 (bilinear) → centre crop 100×100 → scale to [0, 1] → normalise "
                     "with ImageNet mean/std")
    net = Network.composition(ArchitectureSpec.from_dict({"input": {"channels": 3, "height": 100, "width": 100},
                                                          "backbone": {"name": "resnet18"}}))
    assert torch.equal(net.preprocess(photo)[0], to_input(np.asarray(photo), 100, model_name="resnet18"))
    grey = to_input(np.asarray(photo), 32, channels=1)
    assert grey.shape == (1, 1, 32, 32) and torch.equal(grey, resize_crop_normalise(photo, (1, 32, 32))[0])
