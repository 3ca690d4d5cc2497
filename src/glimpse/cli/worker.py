"""The app factory each uvicorn worker process calls when ``workers > 1``."""

from __future__ import annotations

import ast
import ctypes
import os
import signal

from starlette.applications import Starlette

from glimpse.config import environment_config_files, load_settings

_PR_SET_PDEATHSIG = 1


def app() -> Starlette:
    from glimpse.bootstrap import build_node

    _end_with_parent()
    overrides = ast.literal_eval(os.environ.get("GLIMPSE_OVERRIDES", "{}"))
    settings = load_settings(
        environment_config_files(), {k: v for k, v in overrides.items() if v is not None}
    )
    # `glimpse serve` ran the migrations and the start-up recovery before starting the
    # workers; a worker uvicorn restarts must leave its siblings' work alone.
    return build_node(settings, migrate_on_start=False, recover_on_start=False).app


def _end_with_parent() -> None:
    """A worker that outlived a killed ``glimpse serve`` would keep database connections
    and half the node's work while nothing supervises it: have Linux send it SIGTERM
    when its parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
