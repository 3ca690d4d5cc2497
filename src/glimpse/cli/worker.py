"""The app factory each uvicorn worker process calls when ``workers > 1``."""

from __future__ import annotations

import ast
import os

from starlette.applications import Starlette

from glimpse.config import environment_config_files, load_settings


def app() -> Starlette:
    from glimpse.bootstrap import build_node

    overrides = ast.literal_eval(os.environ.get("GLIMPSE_OVERRIDES", "{}"))
    settings = load_settings(
        environment_config_files(), {k: v for k, v in overrides.items() if v is not None}
    )
    # `glimpse serve` ran the migrations and the start-up recovery before starting the
    # workers; a worker uvicorn restarts must leave its siblings' work alone.
    return build_node(settings, migrate_on_start=False, recover_on_start=False).app
