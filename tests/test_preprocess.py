"""Decoding and preprocessing: scaling, resizing, EXIF, every Pillow mode, draft decoding, errors."""

import re

import numpy as np
import pytest
from helpers import image_modes, noise_image, rgb
from PIL import Image

from xception_cli.preprocess import ImageError, load_image, open_image, preprocess_image, to_input


def test_scaling_is_exact_on_known_pixels():
    px = np.array([[[0, 255, 51]], [[127, 128, 204]]], dtype=np.uint8)
    x = to_input(px)
    assert x.dtype == np.float32
    expected = px.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    np.testing.assert_array_equal(x, expected)
    assert x[0, 0, 0] == -1.0 and x[0, 0, 1] == 1.0
    assert abs(float(x[0, 0, 2]) - (51 / 127.5 - 1)) < 1e-7


def test_same_scaling_as_keras_preprocess_input():
    from keras.applications.xception import preprocess_input

    px = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(to_input(px), preprocess_input(px.astype(np.float32)))


def test_squash_on_299_is_identity(tmp_path):
    im = noise_image(299, 299, seed=3)
    im.save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png", resize="squash"), np.asarray(im))


def test_squash_resizes_other_sizes(tmp_path):
    noise_image(640, 200).save(tmp_path / "wide.png")
    assert load_image(tmp_path / "wide.png", resize="squash").shape == (299, 299, 3)


def test_center_crop_keeps_the_centre(tmp_path):
    # Three vertical stripes: red | green | blue, 900x300. The centre 300x300 is pure green.
    a = np.zeros((300, 900, 3), np.uint8)
    a[:, :300, 0] = 255
    a[:, 300:600, 1] = 255
    a[:, 600:, 2] = 255
    Image.fromarray(a).save(tmp_path / "stripes.png")
    crop = load_image(tmp_path / "stripes.png")
    assert crop.shape == (299, 299, 3)
    centre = crop[:, 30:-30].astype(int)  # away from the bicubic ringing at the stripe edges
    assert centre[..., 1].min() >= 250 and centre[..., 0].max() <= 5 and centre[..., 2].max() <= 5
    # The crop covers 0.875 of the short side: the stripe edges are just inside the output.
    squash = load_image(tmp_path / "stripes.png", resize="squash")
    assert squash[:, 0, 0].min() > 250  # squash keeps the red stripe


def test_center_crop_equals_resize_then_crop(tmp_path):
    im = noise_image(500, 400, seed=1).filter(__import__("PIL.ImageFilter").ImageFilter.GaussianBlur(3))
    im.save(tmp_path / "n.png")
    ours = load_image(tmp_path / "n.png").astype(int)
    short = 341  # floor(299 / 0.875)
    big = im.resize((round(500 * short / 400), short), Image.Resampling.BICUBIC)
    left, top = (big.width - 299) // 2, (big.height - 299) // 2
    ref = np.asarray(big.crop((left, top, left + 299, top + 299))).astype(int)
    assert np.abs(ours - ref).mean() < 2.0


def test_exif_rotation_is_applied(tmp_path, samples, engine):
    upright = Image.open(samples[0]).convert("RGB")
    upright.save(tmp_path / "upright.png")
    # Stored rotated, with orientation 6 ("rotate 90 CW to display"), as phones do.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rotated.png", exif=exif)
    a = load_image(tmp_path / "upright.png")
    b = load_image(tmp_path / "rotated.png")
    np.testing.assert_array_equal(a, b)
    # ... and so classifies like its upright twin (and unlike the raw rotated pixels).
    raw = load_image(stored)
    pa, pb, praw = engine(np.stack([to_input(a), to_input(b), to_input(raw)]))
    assert np.abs(pa - pb).max() < 1e-6
    assert np.abs(pa - praw).max() > 1e-3


def test_every_mode_becomes_rgb(tmp_path):
    for name, expected in image_modes(tmp_path).items():
        px = load_image(tmp_path / name)
        assert px.shape == (299, 299, 3) and px.dtype == np.uint8, name
        got = tuple(int(v) for v in px[150, 150])
        assert max(abs(g - e) for g, e in zip(got, expected)) <= 3, (name, got, expected)


def test_arrays_and_pil_images_are_accepted():
    im = noise_image(320, 240)
    a = load_image(im)
    np.testing.assert_array_equal(a, load_image(np.asarray(im)))
    assert preprocess_image(np.asarray(im)).shape == (299, 299, 3)


def test_jpeg_draft_decoding_for_big_photos(tmp_path):
    noise_image(4032, 3024).save(tmp_path / "big.jpg", quality=80)
    with open_image(tmp_path / "big.jpg", draft_to=341) as im:
        assert im.size == (504, 378)  # libjpeg decoded at 1/8 scale, still >= 341 on the short side
    with open_image(tmp_path / "big.jpg", draft_to=None) as im:
        assert im.size == (4032, 3024)
    assert load_image(tmp_path / "big.jpg").shape == (299, 299, 3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
        (lambda p: p.write_text("this is not an image"), "not a recognised image format"),
        (lambda p: None, "file not found"),
    ],
)
def test_unreadable_files_raise_one_line_errors(tmp_path, make, message):
    p = tmp_path / "x.jpg"
    make(p)
    with pytest.raises(ImageError, match=re.escape(message)) as e:
        load_image(p)
    assert "\n" not in str(e.value)


def test_truncated_jpeg(tmp_path):
    noise_image(600, 400).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="truncated"):
        load_image(tmp_path / "cut.jpg")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side, shown", [(120, "120x120 pixels"), (200, "40,000 pixels")])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch, side, shown):
    rgb(side, side).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # Pillow itself refuses above twice this
    with pytest.raises(ImageError, match=f"^{shown} exceeds the decompression-bomb limit of 10,000 pixels$"):
        load_image(tmp_path / "bomb.png")
