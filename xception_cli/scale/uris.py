"""Inputs past the local disk: URIs (``s3://bucket/prefix`` and whatever else pyarrow's file
systems read), listed by the driver and read by the decoding tasks.

S3 takes its credentials, endpoint and region from the usual variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import os

from ..config import IMAGE_EXTENSIONS
from ..errors import ImageError, XceptionError


def is_uri(text: str) -> bool:
    return "://" in text and not os.path.exists(text)


def filesystem(uri: str):
    """``(pyarrow FileSystem, path within it)`` for a URI; S3 honours ``AWS_ENDPOINT_URL`` (or
    ``AWS_ENDPOINT_URL_S3``) for S3-compatible stores."""
    import pyarrow.fs as pafs

    if uri.startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs = {"region": os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"}
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host.rstrip("/") if host else scheme,
                          scheme=scheme if host else "https")
        return pafs.S3FileSystem(**kwargs), uri[len("s3://"):].rstrip("/")
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path.rstrip("/")


def read_bytes(name: str) -> bytes:
    """The bytes of a local path or a URI; ``ImageError`` with a one-line reason otherwise."""
    if not is_uri(name):
        raise ValueError("local paths are decoded from the file")
    try:
        fs, path = filesystem(name)
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        raise ImageError("object not found (it may have been moved or deleted)") from None
    except OSError as e:
        raise ImageError(f"cannot read: {str(e).splitlines()[0]}") from None


def list_uri(uri: str) -> list[str]:
    """Image objects under a URI prefix (or the object itself), sorted; hidden names skipped."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    scheme = uri.split("://", 1)[0]
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [uri]
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as e:
        raise XceptionError(f"{uri}: cannot list ({str(e).splitlines()[0]})") from None
    out = []
    for i in infos:
        name = i.path.rsplit("/", 1)[-1]
        if i.type == pafs.FileType.File and not name.startswith(".") \
                and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
            out.append(f"{scheme}://{i.path}")
    return sorted(out)
