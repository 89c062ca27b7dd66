"""``--no-cache``: the option of every command that builds a network (the cache: ``usercache``)."""

from __future__ import annotations

import click


def _set(ctx, param, value):
    if value:
        from ..usercache import set_enabled

        set_enabled(False)
    return value


no_cache_option = click.option(
    "--no-cache", is_flag=True, expose_value=False, is_eager=True, callback=_set,
    help="Build the network from the weights file; neither read nor write the compiled-network cache "
    "($XCEPTION_CACHE_DIR, else ~/.cache/xception-cli).")
