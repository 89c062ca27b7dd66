"""The metadata file beside an exported model (``NAME.xml.meta.json``, ``NAME.onnx.meta.json``;
``xception.meta.json`` inside a SavedModel's folder): where it is, and reading it safely.

The file is read only up to ``MAX_METADATA_BYTES`` and only when its JSON is an object of the
expected shape (``labels`` one ``[wnid or null, label]`` pair per output, nesting at most
``MAX_DEPTH`` levels), so a damaged or hostile file is one ``WeightsError`` line naming it.

``model_files`` records what identifies the files it describes (size and sha256 of ``NAME.xml``
and ``NAME.bin``, or of ``NAME.onnx``): metadata beside other files than those (a new ``.bin``
beside an earlier export's ``.xml`` and metadata) is refused, so a reader never runs a mixed set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

from ..config import DEFAULT_PREPROCESS, RESIZE_MODES
from ..errors import WeightsError

META_SUFFIX = ".meta.json"
MAX_METADATA_BYTES = 8 << 20  # 1000 labels and the rest take about 60 KB
MAX_DEPTH = 32
FORMAT_OF_SUFFIX = {".xml": "openvino", ".onnx": "onnx"}
DESCRIBED = ("xml", "bin", "onnx")  # model_files' keys: the model's name with this extension
RESIZE_METHODS = {
    "center-crop": "short side to floor(input_size / crop_pct), bicubic, then the centre square",
    "squash": "straight to input_size x input_size, bicubic, ignoring the aspect ratio",
}


def metadata_path(model_path: str | os.PathLike) -> Path:
    """Where the metadata of an exported model lives: ``x.xml`` -> ``x.xml.meta.json`` (so an IR
    and an ONNX file of one name keep their own); a folder (SavedModel) holds ``xception.meta.json``."""
    p = Path(model_path)
    if p.is_dir() or p.suffix == "":
        return p / ("xception" + META_SUFFIX)
    return p.with_name(p.name + META_SUFFIX)


def preprocessing_record(resize: str) -> dict:
    """The ``preprocessing`` entry of the metadata for a model that takes ``resize`` images."""
    cfg = DEFAULT_PREPROCESS
    return {"color": "RGB", "layout": "NHWC", "input_size": cfg.input_size, "resize": resize,
            "resize_method": RESIZE_METHODS[resize], "crop_pct": cfg.crop_pct, "interpolation": cfg.interpolation,
            "scale": f"x / {cfg.scale} {cfg.offset:+g} (float32, [-1, 1])"}


def parse_json(data: str | bytes, where: str):
    """JSON from a file's content, refused (``WeightsError`` starting with ``where``) when it is
    not UTF-8 JSON or nests deeper than ``MAX_DEPTH`` levels."""
    try:
        value = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except UnicodeDecodeError:
        raise WeightsError(f"{where}: not UTF-8 text") from None
    except RecursionError:
        raise WeightsError(f"{where}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise WeightsError(f"{where}: not valid JSON ({str(e).splitlines()[0]})") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_DEPTH:
                    raise WeightsError(f"{where}: JSON nested deeper than {MAX_DEPTH} levels")
                stack.append((child, depth + 1))
    return value


def _read_limited(p: Path) -> bytes | None:
    """The file's bytes, at most ``MAX_METADATA_BYTES``; ``None`` when there is no file."""
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a named pipe must not block us
    except FileNotFoundError:
        return None
    except OSError as e:
        raise WeightsError(f"{p}: cannot read the model's metadata ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise WeightsError(f"{p}: the model's metadata is not a regular file")
        if st.st_size > MAX_METADATA_BYTES:
            raise WeightsError(f"{p}: {st.st_size:,} bytes; a model's metadata file is at most "
                               f"{MAX_METADATA_BYTES >> 20} MiB, so this one is not ours")
        try:
            data = f.read(MAX_METADATA_BYTES + 1)
        except OSError as e:
            raise WeightsError(f"{p}: cannot read the model's metadata ({e.strerror or e})") from None
    if len(data) > MAX_METADATA_BYTES:  # it grew while we looked
        raise WeightsError(f"{p}: more than {MAX_METADATA_BYTES >> 20} MiB; a model's metadata file is not that big")
    return data


def read_metadata(model_path: str | os.PathLike) -> dict | None:
    """The metadata written beside an exported model, checked; ``None`` when there is none."""
    p = metadata_path(model_path)
    data = _read_limited(p)
    if data is None:
        return None
    meta = parse_json(data, str(p))
    check_metadata(meta, p, FORMAT_OF_SUFFIX.get(Path(model_path).suffix.lower()))
    check_files(meta, Path(model_path), p)
    return meta


def file_record(path: str | os.PathLike) -> dict:
    """What identifies a model file in its metadata (``model_files``): its size and sha256."""
    return {"size": os.stat(path).st_size, "sha256": _sha256(path)}


_DIGESTS: dict[tuple, str] = {}  # (device, inode, size, mtime, ctime) -> sha256: each file hashed once


def _sha256(path: str | os.PathLike) -> str:
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()  # 88 MB: about 0.07 s
        if len(_DIGESTS) > 64:
            _DIGESTS.clear()
        _DIGESTS[key] = digest
    return _DIGESTS[key]


def check_files(meta: dict, model_path: Path, p: Path) -> None:
    """Refuse metadata that does not describe the model files beside it (a file of another export,
    or a set mixed by an interrupted one); metadata without ``model_files`` is not checked."""
    for ext, record in (meta.get("model_files") or {}).items():
        f = model_path.with_suffix(f".{ext}")
        try:
            same = os.stat(f).st_size == record["size"] and _sha256(f) == record["sha256"]
        except OSError:
            same = False
        if not same:
            raise WeightsError(f"{p}: does not describe the {f.name} beside it (a file of another export, or "
                               "an export interrupted while replacing this one): export the model again")


def check_metadata(meta, p: Path, fmt: str | None = None) -> None:
    """Refuse metadata of another shape than ``export`` writes (``WeightsError`` naming ``p``)."""
    def bad(why: str):
        raise WeightsError(f"{p}: not the metadata of an exported Xception model: {why}")

    if not isinstance(meta, dict):
        bad(f"expected a JSON object, found {_kind(meta)}")
    for key in ("weights", "preprocessing", "output", "int8"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            bad(f"'{key}' is {_kind(meta[key])}, expected an object")
    if "format" in meta and not isinstance(meta["format"], str):
        bad(f"'format' is {_kind(meta['format'])}, expected a string")
    if fmt is not None and meta.get("format", fmt) != fmt:
        bad(f"its format is {meta['format']!r}, and this model is {fmt!r}")
    _check_model_files(meta.get("model_files"), bad)
    resize = (meta.get("preprocessing") or {}).get("resize", RESIZE_MODES[0])
    if resize not in RESIZE_MODES:
        bad(f"preprocessing 'resize' is {_short(resize)}, expected one of {', '.join(RESIZE_MODES)}")
    _check_labels(meta.get("labels"), _outputs(meta, bad), bad)


def _outputs(meta: dict, bad) -> int | None:
    """The number of outputs the metadata records (``output.shape``), or ``None``."""
    shape = (meta.get("output") or {}).get("shape")
    if shape is None:
        return None
    if not isinstance(shape, list) or not shape or not _is_int(shape[-1]) or shape[-1] < 1:
        bad(f"'output' 'shape' is {_short(shape)}, expected [\"N\", classes]")
    return shape[-1]


def _check_model_files(files, bad) -> None:
    if files is None:
        return
    if not isinstance(files, dict):
        bad(f"'model_files' is {_kind(files)}, expected an object")
    for ext, record in files.items():
        if (ext not in DESCRIBED or not isinstance(record, dict) or not _is_int(record.get("size"))
                or not re.fullmatch(r"[0-9a-f]{64}", str(record.get("sha256")))):
            bad(f"'model_files' entry {_short(ext)} is {_short(record)}, expected one of {', '.join(DESCRIBED)} "
                'with {"size": bytes, "sha256": hex}')


def _check_labels(labels, outputs: int | None, bad) -> None:
    if labels is None:
        bad("no 'labels'")
    if not isinstance(labels, list) or not labels:
        bad(f"'labels' is {_kind(labels) if labels != [] else 'empty'}, expected a list of [wnid, label] pairs")
    for i, pair in enumerate(labels):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)
                and (pair[0] is None or isinstance(pair[0], str))):
            bad(f"label #{i} is {_short(pair)}, expected [wnid or null, label]")
    if len({pair[0] is None for pair in labels}) != 1:
        bad("'labels' mixes ImageNet wnids with null ones")
    if outputs is not None and len(labels) != outputs:
        bad(f"{len(labels)} labels for {outputs} outputs")


def class_names_of(meta: dict) -> list[str] | None:
    """A trained model's own class names from checked metadata (wnids null); ``None`` for ImageNet."""
    labels = meta["labels"]
    return [label for _, label in labels] if labels[0][0] is None else None


def resize_of(meta: dict) -> str | None:
    """The resize mode checked metadata records, or ``None``."""
    return (meta.get("preprocessing") or {}).get("resize")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def _short(v) -> str:
    text = json.dumps(v, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."
