"""The weights an output says it was made with, and the ones a later command may use for it.

An embeddings file records its weights by name and md5 (``weights``, ``weights_md5``), never by
where they live, and a file's metadata is data, not an instruction: ``similar`` loads only weights
the user named (``--weights``) or the ImageNet weights found the usual way, never a file because
an embeddings file names it.
"""

from __future__ import annotations

import os

from ..errors import WeightsError
from .resolve import ENV_WEIGHTS, IMAGENET, RANDOM, md5sum, normalize_weights, weights_name


def recorded_weights(meta: dict) -> tuple[str | None, str | None]:
    """``(name, md5)`` of the weights an output records (``name`` is ``imagenet``, ``none``, a file's
    name, or in files written before names were recorded, a path; ``None`` when unrecorded)."""
    name, md5 = meta.get("weights"), meta.get("weights_md5")
    return (name if isinstance(name, str) and name else None), (md5 if isinstance(md5, str) and md5 else None)


def describe_weights(name: str, md5: str | None = None) -> str:
    if name == IMAGENET:
        return "the ImageNet weights"
    if name == RANDOM:
        return "random weights (none)"
    return f"{name} (md5 {md5})" if md5 else name


def weights_for(meta: dict, given: str | None, where: str) -> tuple[str, str]:
    """The weights to embed queries with, for an embeddings file with metadata ``meta``, and how to
    say which they are: ``(weights, description)``.

    ``given``: ``--weights`` (``None`` when not given). Without it, the file's own weights are used
    only when they are ``imagenet`` or ``none``, or the file ``$XCEPTION_WEIGHTS`` names when its
    md5 is the one recorded (found the usual way); any other weights file must be named.
    A given file whose md5 differs from the one recorded, or other weights than those recorded, are
    refused (``WeightsError``): the similarities would compare two different networks.
    """
    name, md5 = recorded_weights(meta)
    if given is None:
        if name is None or name in (IMAGENET, RANDOM):
            return (name or IMAGENET), describe_weights(name or IMAGENET)
        found = os.environ.get(ENV_WEIGHTS)  # the usual way a weights file is found: $XCEPTION_WEIGHTS
        if md5 and found and os.path.isfile(found) and md5sum(found) == md5:
            return found, describe_weights(weights_name(found), md5)
        raise WeightsError(f"{where} was made with the weights file {describe_weights(weights_name(name), md5)}: "
                           "similar loads only weights you name, so pass that file with --weights PATH")
    w = normalize_weights(given)
    now = weights_name(w)
    now_md5 = md5sum(w) if w not in (IMAGENET, RANDOM) and os.path.isfile(w) else None
    if name is not None:
        same = md5 == now_md5 if md5 and now_md5 else weights_name(name) == now
        if not same:
            raise WeightsError(f"{where} was made with {describe_weights(weights_name(name), md5)}; --weights "
                               f"{given} is {describe_weights(now, now_md5)}: the queries' similarities would "
                               "compare two networks (pass the weights the file was made with)")
    return w, describe_weights(now, now_md5)
