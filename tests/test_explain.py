"""`xception explain`: class activation maps equal to Keras' Grad-CAM recipe, pictures that show
the photo as it is seen, and files that stay where they belong."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from xception_cli.cli import cli
from xception_cli.explain_job import RECORDS, file_stems, safe_stem
from xception_cli.heatmap import ANCHORS, colormap, colormap_lab, overlay, srgb_to_lab


def explain(*args, weights):
    r = CliRunner().invoke(cli, ["explain", *map(str, args), "--weights", str(weights), "--no-progress"])
    return r, r.exit_code


def records_of(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / RECORDS).read_text().splitlines()]


def written(folder) -> set[str]:
    """What a run left in its folder, the report page aside."""
    return set(os.listdir(folder)) - {"explain.html"}


def grad_cam(model, batch: np.ndarray, pick) -> tuple[np.ndarray, list[np.ndarray]]:
    """Keras' Grad-CAM recipe, with a gradient: each image's class score (the logit)
    differentiated with respect to block14_sepconv2_act, averaged per channel, the map weighted by
    it, ReLU, scaled by its maximum (NaN where that is 0, as the recipe gives). One forward pass:
    ``(probabilities, [maps for each list of classes pick(probabilities) gives, one per image])``."""
    import keras
    import tensorflow as tf

    conv = keras.Model(model.inputs, model.get_layer("block14_sepconv2_act").output)
    dense = model.get_layer("predictions")
    with tf.GradientTape(persistent=True) as tape:
        a = conv(batch)
        tape.watch(a)
        logits = tf.matmul(model.get_layer("avg_pool")(a), dense.kernel) + dense.bias
        probs = tf.nn.softmax(logits).numpy()
        scores = [tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1)) for classes in pick(probs)]
    maps = []
    for score in scores:  # an image's score depends on its own map only: one tape for the batch
        alpha = tf.reduce_mean(tape.gradient(score, a), axis=(1, 2))
        cam = tf.nn.relu(tf.reduce_sum(a * alpha[:, None, None, :], axis=-1)).numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            maps.append(cam / cam.max(axis=(1, 2), keepdims=True))
    return probs, maps


@pytest.fixture(scope="module")
def keras_batch(presized):
    import keras
    from keras.applications.xception import preprocess_input

    files = sorted(presized.glob("*.png"))
    return files, preprocess_input(np.stack([keras.utils.img_to_array(keras.utils.load_img(f)) for f in files]))


def assert_same_maps(ours: np.ndarray, theirs: np.ndarray) -> None:
    for a, b in zip(ours, theirs):
        if np.isnan(b).any():  # no positive evidence anywhere: the recipe divides 0 by 0, ours stays 0
            assert not a.any()
        else:
            assert np.abs(a - b).max() < 1e-4


def test_raw_map_is_keras_grad_cam(tmp_path, presized, weights_file, reference_model, keras_batch):
    from xception_cli.labels import class_index

    files, batch = keras_batch
    # the most probable class of each photo, and the first photo's 7th explained on every photo
    probs, (top_maps, chosen_maps) = grad_cam(reference_model, batch, lambda p: (
        list(np.argmax(p, axis=1)), [int(np.argsort(p[0])[-7])] * len(p)))
    top, chosen = [int(i) for i in np.argmax(probs, axis=1)], int(np.argsort(probs[0])[-7])
    assert (~np.isnan(top_maps).any(axis=(1, 2))).sum() >= 2 and not np.isnan(chosen_maps).all()

    r, code = explain(presized, "--resize", "squash", "--raw", "-o", tmp_path / "top", weights=weights_file)
    assert code == 0, r.output
    recs = records_of(tmp_path / "top")
    assert [rec["path"] for rec in recs] == [str(f) for f in files]
    assert [rec["predictions"][0]["index"] for rec in recs] == top
    ours = np.stack([np.load(rec["predictions"][0]["map"]) for rec in recs])
    assert ours.shape == (len(files), 10, 10) and ours.dtype == np.float32
    assert_same_maps(ours, top_maps)

    # A class named by its label, whatever its rank: its map, probability and rank among all classes.
    r, code = explain(presized, "--resize", "squash", "--raw", "--class", class_index()[chosen][1],
                      "-o", tmp_path / "chosen", weights=weights_file)
    assert code == 0, r.output
    picked = [rec["predictions"] for rec in records_of(tmp_path / "chosen")]
    assert all(len(p) == 1 and p[0]["index"] == chosen for p in picked)
    assert picked[0][0]["rank"] == 7
    assert max(abs(p[0]["probability"] - probs[i, chosen]) for i, p in enumerate(picked)) < 1e-5
    assert_same_maps(np.stack([np.load(p[0]["map"]) for p in picked]), chosen_maps)


def test_tensorflow_runtime_gives_the_same_maps(tmp_path, presized, weights_file):
    common = (presized, "--resize", "squash", "--raw", "-k", "2")
    maps = {}
    for runtime in ("openvino", "tensorflow"):
        r, code = explain(*common, "--runtime", runtime, "-o", tmp_path / runtime, weights=weights_file)
        assert code == 0, r.output
        maps[runtime] = [(p["index"], np.load(p["map"])) for rec in records_of(tmp_path / runtime)
                         for p in rec["predictions"]]
    for (i, a), (j, b) in zip(maps["openvino"], maps["tensorflow"]):
        assert i == j and np.abs(a - b).max() < 1e-4


def test_probabilities_are_predicts(tmp_path, presized, weights_file):
    r = CliRunner().invoke(cli, ["predict", str(presized), "--resize", "squash", "-k", "3", "-f", "json",
                                 "--weights", str(weights_file)])
    assert r.exit_code == 0, r.output
    predicted = json.loads(r.stdout)
    r, code = explain(presized, "--resize", "squash", "-k", "3", "--records", "-", "-o", tmp_path / "o",
                      weights=weights_file)
    assert code == 0, r.output
    explained = [json.loads(line) for line in r.stdout.splitlines()]
    assert not (tmp_path / "o" / RECORDS).exists()  # --records -: stdout
    for p, e in zip(predicted, explained, strict=True):
        assert p["path"] == e["path"] and p["file_id"] == e["file_id"] and p["options"] == e["options"]
        for a, b in zip(p["predictions"], e["predictions"], strict=True):
            assert (a["rank"], a["index"], a["label"]) == (b["rank"], b["index"], b["label"])
            assert abs(a["probability"] - b["probability"]) < 1e-5
            assert os.path.isfile(b["overlay"]) and "map" not in b


def test_overlay_is_the_photo_as_seen(tmp_path, samples, weights_file):
    upright = Image.open(samples[1]).convert("RGB")  # cat.jpg, landscape
    w, h = upright.size
    assert w > h
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # stored turned, orientation 6, as phones do
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "in").mkdir()
    stored.save(tmp_path / "in" / "turned.png", exif=exif)
    r, code = explain(tmp_path / "in", "-o", tmp_path / "o", weights=weights_file)
    assert code == 0, r.output
    (pred,) = records_of(tmp_path / "o")[0]["predictions"]
    assert pred["overlay"] == str(tmp_path / "o" / f"turned.{pred['index']}-{pred['label']}.png")
    shown = np.asarray(Image.open(pred["overlay"]).convert("RGB"), dtype=float)
    assert shown.shape == (h, w, 3)  # upright, never enlarged
    # center-crop: the network saw the middle square; the left edge it did not see is the photo, dimmed
    edge = int(w * 0.15)
    assert np.abs(shown[:, :edge] - np.asarray(upright, dtype=float)[:, :edge] * 0.45).max() <= 1.0

    r, code = explain(tmp_path / "in", "-o", tmp_path / "small", "--size", "200", "--image-format", "jpg",
                      "--resize", "squash", weights=weights_file)
    assert code == 0, r.output
    (pred,) = records_of(tmp_path / "small")[0]["predictions"]
    assert pred["overlay"].endswith(".jpg") and Image.open(pred["overlay"]).size == (200, round(200 * h / w))


def test_bad_files_are_error_records_as_in_predict(tmp_path, samples, weights_file):
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "good.jpg").write_bytes(samples[0].read_bytes())
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.png").write_text("not an image")
    inputs = [d, tmp_path / "missing.jpg"]
    p = CliRunner().invoke(cli, ["predict", *map(str, inputs), "-f", "json", "--weights", str(weights_file)])
    r, code = explain(*inputs, "-o", tmp_path / "o", weights=weights_file)
    assert code == p.exit_code == 1, r.output
    errors = {rec["path"]: rec.get("error") for rec in records_of(tmp_path / "o")}
    assert errors == {rec["path"]: rec.get("error") for rec in json.loads(p.stdout)}
    assert sum(e is None for e in errors.values()) == 1
    good = next(rec for rec in records_of(tmp_path / "o") if "error" not in rec)
    assert written(tmp_path / "o") == {RECORDS, os.path.basename(good["predictions"][0]["overlay"])}

    r, code = explain(tmp_path / "nothing-here.jpg", "-o", tmp_path / "o2", weights=weights_file)
    assert code == 2 and "no such file" in r.output
    r, code = explain(d, "-o", tmp_path / "o3", "-k", "2", "--class", "3", weights=weights_file)
    assert code == 2 and "-k and --class" in r.output
    r, code = explain(d, "-o", tmp_path / "o4", "--class", "no-such-class", weights=weights_file)
    assert code == 2 and "no-such-class" in r.output and not (tmp_path / "o4" / RECORDS).exists()


def test_names_stay_inside_and_distinct(tmp_path, samples, weights_file):
    for stem in ("s3://bucket/../../etc/passwd.jpg", "/abs/../x.jpg", "..", "a/..", ".hidden.jpg", "\x1b[2Jred.jpg",
                 "back\\slash.jpg", "nul\x00.jpg", "\u202etxt.exe.jpg", "x" * 300 + ".jpg", "caf\udce9.jpg"):
        s = safe_stem(stem)
        assert s and s not in (".", "..") and not s.startswith(".") and "/" not in s and "\\" not in s
        assert s.isprintable() and len(s.encode("utf-8")) <= 100, (stem, s)
    stems = file_stems(["a/cat.jpg", "b/cat.png", "b/Cat.jpg", "dog.jpg", "a/cat.jpg"])
    assert len(set(stems.values())) == 4 and stems["dog.jpg"] == "dog"
    assert all(stems[n].startswith(("cat~", "Cat~")) for n in ("a/cat.jpg", "b/cat.png", "b/Cat.jpg"))
    assert stems == file_stems(["b/Cat.jpg", "dog.jpg", "b/cat.png", "a/cat.jpg"])  # whatever the order

    for sub, photo in (("a", samples[0]), ("b", samples[1])):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "same.jpg").write_bytes(photo.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"keep")
    r, code = explain(tmp_path / "a", tmp_path / "b", "-o", out, "--raw", weights=weights_file)
    assert code == 0, r.output
    recs = records_of(out)
    files = [p[k] for rec in recs for p in rec["predictions"] for k in ("overlay", "map")]
    assert len(set(files)) == 4 and all(os.path.dirname(os.path.realpath(f)) == str(out.resolve()) for f in files)
    # a link planted at an output's name is replaced, never followed
    planted = files[0]
    os.remove(planted)
    os.symlink(outside, planted)
    r, code = explain(tmp_path / "a", tmp_path / "b", "-o", out, "--raw", weights=weights_file)
    assert code == 0, r.output
    assert outside.read_bytes() == b"keep" and not os.path.islink(planted)
    assert written(out) == {RECORDS, *map(os.path.basename, files)}  # no staging folder left


def test_an_input_is_never_written_over(tmp_path, samples, weights_file):
    (tmp_path / "in").mkdir()
    cat = tmp_path / "in" / "cat.jpg"
    cat.write_bytes(samples[1].read_bytes())
    out = tmp_path / "o"
    r, code = explain(cat, "-o", out, weights=weights_file)
    assert code == 0, r.output
    overlay_path = records_of(out)[0]["predictions"][0]["overlay"]
    # A photo saved where the overlay goes, given as an input too: its record fails, the file stays.
    victim = out / os.path.basename(overlay_path)
    Image.open(samples[0]).save(victim)
    before = victim.read_bytes()
    r, code = explain(cat, victim, "-o", out, weights=weights_file)
    assert code == 1
    errors = {rec["path"]: rec.get("error") for rec in records_of(out)}
    assert "is one of the inputs" in errors[str(cat)] and errors[str(victim)] is None
    assert victim.read_bytes() == before
    r, code = explain(cat, "-o", out, "--records", cat, weights=weights_file)
    assert code == 2 and cat.read_bytes() == samples[1].read_bytes()


def test_colormaps_are_perceptually_uniform():
    for name, anchors in ANCHORS.items():
        lab = colormap_lab(name)
        steps = np.linalg.norm(np.diff(lab, axis=0), axis=1)
        assert (np.diff(lab[:, 0]) > 0).all(), name  # lightness rises all the way: it reads in grayscale
        for q in range(4):  # equal colour differences between two anchors
            part = steps[(np.arange(255) >= q * 255 / 4) & (np.arange(255) + 1 <= (q + 1) * 255 / 4)]
            assert part.max() / part.min() < 1.01, (name, q)
        lut = colormap(name)
        want = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in anchors])
        assert np.abs(lut[[0, 255]].astype(int) - want[[0, -1]]).max() <= 1
        assert np.abs(srgb_to_lab(lut[[0, 255]] / 255) - srgb_to_lab(want[[0, -1]] / 255)).max() < 1
    photo = Image.new("RGB", (40, 30), (200, 100, 0))
    half = np.asarray(overlay(photo, np.full((10, 10), 1.0), alpha=0.5), dtype=int)
    assert np.abs(half - (np.array([200, 100, 0]) + colormap("viridis")[255]) / 2).max() <= 1


def test_openvino_path_imports_no_tensorflow(tmp_path, presized, weights_file):
    """The maps come without TensorFlow or Keras on the OpenVINO path (a process of its own)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from xception_cli.explain import Explainer\n"
        f"(e,) = Explainer(weights={str(weights_file)!r}, runtime='openvino').explain("
        f"{str(next(presized.glob('*.png')))!r})\n"
        "assert e.error is None and e.maps.shape == (1, 10, 10), e\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "XCEPTION_NO_CACHE": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_png_is_the_image():
    import io

    from xception_cli.heatmap import png_bytes

    rng = np.random.default_rng(0)
    for shape in ((1, 1, 3), (1, 7, 3), (5, 1, 3), (31, 17, 3)):
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        back = Image.open(io.BytesIO(png_bytes(a)))
        assert back.format == "PNG" and back.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(back), a)


def test_its_own_pictures_are_not_inputs(tmp_path, samples, weights_file):
    (tmp_path / "cat.jpg").write_bytes(samples[1].read_bytes())
    out = tmp_path / "maps"  # inside the folder explained
    for _ in range(2):
        r, code = explain(tmp_path, "-o", out, weights=weights_file)
        assert code == 0, r.output
        assert [rec["path"] for rec in records_of(out)] == [str(tmp_path / "cat.jpg")]
    assert "skipped 1 file(s) found in the output folder" in r.output


def test_a_big_jpeg_is_shown_at_the_size_asked_and_classified_as_predict_does(tmp_path, samples, weights_file):
    big = tmp_path / "big.jpg"
    Image.open(samples[2]).convert("RGB").resize((1600, 1200), Image.Resampling.BICUBIC).save(big, quality=90)
    r, code = explain(big, "-o", tmp_path / "o", "--size", "700", "-k", "2", weights=weights_file)
    assert code == 0, r.output
    explained = records_of(tmp_path / "o")[0]["predictions"]
    assert Image.open(explained[0]["overlay"]).size == (700, 525)  # decoded at 1/2, resized
    r, code = explain(big, "-o", tmp_path / "o2", "--size", "420", weights=weights_file)
    assert code == 0, r.output  # decoded at 1/4 (400x300: over 95% of the size asked), then resized up to it
    assert Image.open(records_of(tmp_path / "o2")[0]["predictions"][0]["overlay"]).size == (420, 315)
    p = CliRunner().invoke(cli, ["predict", str(big), "-k", "2", "-f", "json", "--weights", str(weights_file)])
    for a, b in zip(json.loads(p.stdout)[0]["predictions"], explained, strict=True):
        assert a["index"] == b["index"] and abs(a["probability"] - b["probability"]) < 1e-5


def test_the_page_reuses_the_photos_and_pictures_in_hand(tmp_path, samples, weights_file, monkeypatch):
    """explain.html's thumbnails come from the photo and pictures explain already holds: no file is
    decoded again for the page (a 12 MP JPEG each was a third of explain's extra cost)."""
    from xception_cli.output import html

    read_again = []
    monkeypatch.setattr(html, "thumbnail", lambda source, *a, **k: read_again.append(source))
    out = tmp_path / "maps"
    explain(*samples[:2], "-o", out, "-k", "2", weights=weights_file)
    page = (out / "explain.html").read_text()
    assert read_again == []
    assert page.count('src="data:image/jpeg;base64,') >= 2 * (1 + 2)  # each photo and its two pictures
