"""Untrusted files are measured before they are read (issue 18, items 3-5).

Each hostile file is made here, small on disk and declaring a lot: a weights file, a ``.keras``
archive, images and embeddings files. The public command runs in a child process and its peak
memory (``ru_maxrss`` of that child alone, read by a small wrapper) is held well under what the
unbounded reading took.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from xception_cli.model import weight_layout

SAMPLES = Path(__file__).resolve().parent / "data"
# Runs the command as its own child and reports that child's peak memory alone.
WRAPPER = ("import json, resource, subprocess, sys; r = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1] + '.out', "
           "'wb'), stderr=open(sys.argv[1] + '.err', 'wb')); print(json.dumps([r.returncode, "
           "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))")


def run(tmp_path, *args) -> tuple[int, float, str, str]:
    """``(exit status, peak MiB, stdout, stderr)`` of ``xception ARGS`` in a child process."""
    base = tmp_path / "run"
    r = subprocess.run([sys.executable, "-c", WRAPPER, str(base), sys.executable, "-m", "xception_cli", *args],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    code, peak = json.loads(r.stdout)
    out, err = (Path(f"{base}.{s}").read_text(errors="replace") for s in ("out", "err"))
    return code, peak, out, "\n".join(line for line in err.splitlines() if not line.startswith(("I0000", "WARNING")))


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(("Error:", "warning:"))]


# --- weights ------------------------------------------------------------------------------------

def empty_dataset(group, name, shape, dtype="f4"):
    """A dataset that declares ``shape`` and stores nothing (chunked: reading fills it with 0)."""
    chunks = tuple(max(1, min(d, 1 << 16)) for d in shape) if shape else None
    group.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, compression="gzip" if shape else None)


def legacy_h5(path, layers, dtype="f4"):
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name, _ in layers]
        for name, shapes in layers:
            group = f.create_group(name)
            group.attrs["weight_names"] = [f"w{i}".encode() for i in range(len(shapes))]
            for i, shape in enumerate(shapes):
                empty_dataset(group, f"w{i}", shape, dtype)
    return path


def test_h5_declaring_a_huge_array_is_refused_before_reading(tmp_path):
    bomb = legacy_h5(tmp_path / "bomb.h5", [("block1_conv1", [(400_000_000,)])])
    assert bomb.stat().st_size < 20_000
    code, peak, _, err = run(tmp_path, "predict", str(SAMPLES / "cat.jpg"), "--weights", str(bomb))
    assert code == 2
    assert error_lines(err) == [f"Error: {bomb}: not Xception weights for this model: layer #1 'block1_conv1' "
                                "expects [3x3x3x32], the file's layer 'block1_conv1' has [400000000]"]
    assert peak < 600, f"peak {peak:.0f} MiB (reading the array first took 1.6 GB)"


def test_h5_of_the_right_shapes_but_not_floats_is_refused(tmp_path):
    ints = legacy_h5(tmp_path / "ints.h5", weight_layout(True), dtype="i4")
    code, _, _, err = run(tmp_path, "predict", str(SAMPLES / "cat.jpg"), "--weights", str(ints))
    assert code == 2
    assert error_lines(err) == [f"Error: {ints}: not Xception weights: an array of type int32 "
                                "(expected floating point)"]


def test_weights_over_the_byte_limit_are_refused_by_their_shapes(tmp_path, monkeypatch):
    from xception_cli.weights import WeightsError, files, read_weights

    path = legacy_h5(tmp_path / "w.h5", weight_layout(True))
    monkeypatch.setattr(files, "MAX_WEIGHTS_BYTES", 1 << 20)
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda *a: pytest.fail("an array was read"))
    with pytest.raises(WeightsError, match=r"w\.h5: its arrays declare 87 MiB, over the limit of 1 MiB for a "):
        read_weights(path)


def keras_archive(path, width: int):
    """A .keras archive whose config declares Dense(width) on a width-wide input (a few KB)."""
    def layer(cls, config, **extra):
        return {"module": "keras.layers", "class_name": cls, "config": config, "registered_name": None, **extra}

    tensor = {"class_name": "__keras_tensor__",
              "config": {"shape": [None, width], "dtype": "float32", "keras_history": ["in", 0, 0]}}
    config = {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
              "config": {"name": "bomb", "trainable": True, "input_layers": ["in", 0, 0], "output_layers": ["d", 0, 0],
                         "layers": [layer("InputLayer", {"batch_shape": [None, width], "dtype": "float32",
                                                         "name": "in"}, name="in", inbound_nodes=[]),
                                    layer("Dense", {"name": "d", "units": width, "use_bias": True}, name="d",
                                          build_config={"input_shape": [None, width]},
                                          inbound_nodes=[{"args": [tensor], "kwargs": {}}])]}}
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        f.create_group("layers")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", weights.getvalue())
    return path


def test_keras_archive_declaring_huge_layers_is_refused_before_they_are_built(tmp_path):
    bomb = keras_archive(tmp_path / "bomb.keras", 14_000)
    code, peak, _, err = run(tmp_path, "predict", str(SAMPLES / "cat.jpg"), "--weights", str(bomb))
    assert code == 2
    assert error_lines(err) == [f"Error: {bomb}: not Xception weights for this model: its config's layer #1 is "
                                "InputLayer(batch_shape=[None, 14000]), the model's "
                                "InputLayer(batch_shape=[None, 299, 299, 3])"]
    assert peak < 2000, f"peak {peak:.0f} MiB (building the declared layers took 3.4 GB)"


# --- images -------------------------------------------------------------------------------------

def png(path, width: int, height: int, depth: int = 16, color: int = 0, pixels: bool = True):
    """A PNG of zeros written row by row (never whole in memory); without ``pixels``, only the header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))]
    if pixels:
        z, row = zlib.compressobj(9), bytes(1 + width * {0: 1, 6: 4}[color] * depth // 8)
        parts.append(chunk(b"IDAT", b"".join(z.compress(row) for _ in range(height)) + z.flush()))
    path.write_bytes(b"".join(parts + [chunk(b"IEND", b"")]))
    return path


def test_16_bit_images_are_converted_in_bounded_memory(tmp_path):
    """Two 172 KB 9400x9400 16-bit PNGs with -j 2 took 4.9 GB (float64 at full size, side by side)."""
    big = [png(tmp_path / f"big{i}.png", 9400, 9400) for i in range(2)]
    assert big[0].stat().st_size < 200_000
    code, peak, out, err = run(tmp_path, "predict", *map(str, big), "-j", "2", "--weights", "none", "-f", "jsonl")
    assert code == 0, err
    assert [json.loads(line)["path"] for line in out.splitlines()] == [str(p) for p in big]
    assert peak < 1500, f"peak {peak:.0f} MiB"


def test_a_big_image_with_transparency_is_composited_in_bounded_memory(tmp_path):
    """A 190 KB 9400x9400 gray+alpha PNG peaked at 2.0 GB (four full-size RGBA copies to composite)."""
    from PIL import Image

    la = tmp_path / "la.png"
    Image.new("LA", (9400, 9400), (120, 200)).save(la)
    assert la.stat().st_size < 300_000
    code, peak, out, err = run(tmp_path, "predict", str(la), "--weights", "none", "-f", "jsonl")
    assert code == 0, err
    assert json.loads(out)["path"] == str(la)
    assert peak < 1300, f"peak {peak:.0f} MiB"


def test_an_image_over_the_byte_limit_is_an_error_record(tmp_path):
    """8300x8300 RGBA is under the pixel limit, over its bytes (an RGB image at the limit)."""
    wide = png(tmp_path / "wide.png", 8300, 8300, depth=8, color=6, pixels=False)
    code, _, out, err = run(tmp_path, "predict", str(wide), "--weights", "none", "-f", "jsonl")
    assert code == 1
    message = "8300x8300 RGBA pixels take 263 MiB decoded, over the limit of 256 MiB (an RGB image at the pixel limit)"
    assert {k: v for k, v in json.loads(out).items() if k != "file_id"} == {"path": str(wide), "error": message}
    assert error_lines(err) == [f"warning: {wide}: {message}"]


def test_16_bit_conversion_is_unchanged_and_chunked(monkeypatch):
    from PIL import Image

    from xception_cli import preprocess

    rng = np.random.default_rng(0)
    for arr in (rng.integers(0, 65536, (301, 457), dtype=np.uint16), rng.integers(-9, 70000, (90, 77)).astype(np.int32),
                rng.uniform(0, 1, (64, 50)).astype(np.float32), rng.uniform(-3, 300, (64, 50)).astype(np.float32)):
        im = Image.fromarray(arr)
        top = arr.astype(np.float64).max(initial=0)
        scaled = arr / 257.0 if arr.dtype == np.uint16 or (arr.dtype == np.int32 and top > 255) else \
            arr * 255.0 if arr.dtype == np.float32 and top <= 1.0 else arr.astype(np.float64)
        expected = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        monkeypatch.setattr(preprocess, "CHUNK_PIXELS", 1000)
        assert np.array_equal(np.asarray(preprocess.to_gray8(im)), expected)


# --- embeddings files ---------------------------------------------------------------------------

def test_npz_declaring_more_than_it_can_hold_is_refused_unread(tmp_path):
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("embeddings.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (2, 62_500_000)})
            block, left = bytes(1 << 24), 500_000_000
            while left:
                f.write(block[:min(left, len(block))])
                left -= min(left, len(block))
        z.writestr("paths.npy", _npy(np.array(["a", "b"])))
    code, peak, _, err = run(tmp_path, "similar", "--duplicates", "--embeddings", str(bomb))
    assert code == 2
    [line] = error_lines(err)
    assert line.startswith(f"Error: {bomb}: cannot read embeddings (its arrays unpack to ") and \
        "over the limit of 67,108,864 bytes (16 times the file's size, at least 64 MiB)" in line
    assert peak < 300, f"peak {peak:.0f} MiB (loading it took 1.0 GB)"


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def identical(tmp_path, n: int) -> Path:
    path = tmp_path / "same.npz"
    np.savez_compressed(path, embeddings=np.ones((n, 4), np.float32), meta=np.array("{}"),
                        paths=np.array([f"img{i:04d}.jpg" for i in range(n)]))
    return path


def test_duplicates_are_capped_by_max_pairs(tmp_path):
    same = identical(tmp_path, 600)  # 179,700 pairs
    code, _, out, err = run(tmp_path, "similar", "--duplicates", "--embeddings", str(same), "-f", "jsonl")
    assert code == 1
    assert len(out.splitlines()) == 100_000
    assert error_lines(err) == [f"warning: {same}: 179,700 pairs at or above 0.95; only the 100,000 most similar are "
                                "listed (--max-pairs 100,000)"]
    code, _, out, err = run(tmp_path, "similar", "--duplicates", "--embeddings", str(same), "-f", "jsonl",
                            "--max-pairs", "3")
    assert code == 1 and "only the 3 most similar" in err
    assert [json.loads(line) for line in out.splitlines()] == [
        {"a": "img0000.jpg", "b": f"img{j:04d}.jpg", "similarity": 1.0} for j in (1, 2, 3)]


def test_duplicates_under_the_cap_exit_0_and_help_states_the_default(tmp_path):
    same = identical(tmp_path, 10)
    code, _, out, err = run(tmp_path, "similar", "--duplicates", "--embeddings", str(same), "-f", "jsonl",
                            "--max-pairs", "45")
    assert code == 0 and len(out.splitlines()) == 45 and not error_lines(err)
    code, _, out, _ = run(tmp_path, "similar", "--help")
    assert code == 0 and "--max-pairs" in out and "default: 100000" in out


def test_a_small_parquet_that_unpacks_to_gigabytes_is_refused_before_it_is_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    bomb = tmp_path / "bomb.parquet"
    rows = 300_000  # the same 2048-value vector, compressed to almost nothing
    vector = pa.array([[0.5] * 2048], pa.list_(pa.float32(), 2048))
    table = pa.table({"path": pa.array(["a.jpg"] * rows), "embedding": pa.concat_arrays([vector] * rows),
                      "error": pa.nulls(rows, pa.string())})
    pq.write_table(table, bomb, compression="zstd", row_group_size=rows)
    assert bomb.stat().st_size < 20 << 20
    code, peak, _, err = run(tmp_path, "similar", "--duplicates", "--embeddings", str(bomb))
    assert code == 2 and "unpack to" in err and "over the limit" in err
    assert peak < 500  # MiB: it holds 2.4 GB


def test_a_parquet_whose_text_column_repeats_a_long_name_is_refused_before_it_is_decoded(tmp_path):
    """A 20 KB name on 100,000 rows, dictionary-encoded: a few kilobytes stored, 2 GB as text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    bomb = tmp_path / "names.parquet"
    rows, name = 100_000, "n" * 20_000 + ".jpg"
    table = pa.table({"path": pa.array([name] * rows).dictionary_encode(),
                      "embedding": pa.nulls(rows, pa.list_(pa.float32(), 4)),
                      "error": pa.array(["x"] * rows).dictionary_encode()})
    pq.write_table(table, bomb, compression="zstd")
    assert bomb.stat().st_size < 1 << 20
    code, peak, _, err = run(tmp_path, "similar", "--duplicates", "--embeddings", str(bomb))
    assert code == 2 and "text included" in err and "over the limit" in err, err
    assert peak < 600, f"peak {peak:.0f} MiB (decoding the names takes 2 GB)"


def test_a_parquet_column_this_tool_does_not_write_is_never_read(tmp_path):
    """An extra list<string> column holding a 150 KB string on 10,000 rows (24 KB stored, 1.5 GB
    decoded): never read; the file's own columns are."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 10_000
    big = pa.array([["x" * 150_000]] * rows, pa.list_(pa.string()))
    vectors = pa.array([[float(i % 7), 1.0, 0.0, 2.0] for i in range(rows)], pa.list_(pa.float32(), 4))
    table = pa.table({"path": pa.array([f"{i}.jpg" for i in range(rows)]), "embedding": vectors,
                      "error": pa.nulls(rows, pa.string()), "notes": big})
    bomb = tmp_path / "extra.parquet"
    pq.write_table(table, bomb, compression="zstd", store_schema=False)
    assert bomb.stat().st_size < 1 << 20
    code, peak, out, err = run(tmp_path, "similar", "--duplicates", "--threshold", "1", "--max-pairs", "3",
                               "--embeddings", str(bomb), "-f", "jsonl")
    assert code == 1 and len(out.splitlines()) == 3, err  # capped: the pairs of identical vectors
    assert peak < 900, f"peak {peak:.0f} MiB (decoding the extra column took 2.8 GB)"


def test_nested_text_is_measured_before_it_is_decoded():
    """A Ray shard of predict's records whose labels repeat one 20 KB string on 100,000 rows."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from xception_cli.output.arrays import read_parquet

    rows = 100_000
    pred = pa.struct([("rank", pa.int32()), ("index", pa.int32()), ("wnid", pa.string()), ("label", pa.string()),
                      ("probability", pa.float64())])
    one = pa.array([[{"rank": 1, "index": 1, "wnid": "n1", "label": "L" * 20_000, "probability": 1.0}]],
                   pa.list_(pred))
    table = pa.table({"path": pa.array(["a.jpg"] * rows), "file_id": pa.array(["f"] * rows),
                      "error": pa.nulls(rows, pa.string()), "predictions": pa.concat_arrays([one] * rows)})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    assert len(buf.getvalue()) < 1 << 20
    with pytest.raises(ValueError, match="text included"):
        read_parquet(buf.getvalue(), "predictions", strict=True)
