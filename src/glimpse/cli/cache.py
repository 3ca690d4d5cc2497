"""``glimpse cache``: the image cache of one node (guide 1.6.3, 1.6.4).

The cache is local to each node, so the management commands talk to one node's API
(``--host``, as ``glance-cache-manage --host``): ``list-cached``, ``list-queued``,
``queue-image``, ``delete-cached-image``, ``delete-all-cached-images``,
``delete-queued-image``, ``delete-all-queued-images``. ``prune``, ``clean`` and
``prefetch`` run the node's cache jobs once, here, from its configuration file.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import sys
from collections.abc import Callable
from typing import Any

import click
import httpx
from rich.console import Console
from rich.table import Table

DEFAULT_HOST = "http://127.0.0.1:9292"
DEFAULT_PORT = 9292
CLEAR_TARGET_HEADER = "x-image-cache-clear-target"

# Piped output is not cut at 80 columns: image ids stay whole for scripts.
console = Console(width=None if sys.stdout.isatty() else 200)


def node_url(host: str) -> str:
    """``--host`` as a URL: a bare address (the guide's ``<host_ip>``) gets http and 9292."""
    host = host.strip().rstrip("/")
    if "://" in host:
        return host
    if host.count(":") > 1 and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 address
    if not host.endswith("]") and ":" in host.rsplit("]", 1)[-1]:
        return f"http://{host}"
    return f"http://{host}:{DEFAULT_PORT}"


class NodeApi:
    """The ``/v2/cache`` API of one node."""

    def __init__(self, host: str, token: str | None, timeout: float) -> None:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request
        self.url = node_url(host)
        headers = {"accept": "application/json"}
        if token:
            headers["x-auth-token"] = token
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
        try:
            response = self.http.request(method, path, headers=headers)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"Cannot reach {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise click.ClickException(f"{self.url}: {_error_message(response)}")
        return response.json() if response.content else None

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.call("GET", "/v2/cache")
        return state


def _error_message(response: httpx.Response) -> str:
    try:
        message = str(response.json()["message"])
    except (ValueError, KeyError, TypeError):
        message = response.text
    message = message.replace("<br />", " ").strip()
    return f"{response.status_code} {response.reason_phrase}: {message}"


def _node_options(func: Callable[..., None]) -> Callable[..., None]:
    func = click.option("--timeout", type=float, default=60.0, show_default=True,
                        help="Seconds to wait for the node.")(func)
    func = click.option("--os-auth-token", "token", envvar="OS_AUTH_TOKEN",
                        help="Token for the node's API (default: $OS_AUTH_TOKEN).")(func)
    func = click.option("--host", default=DEFAULT_HOST, show_default=True,
                        help="The node whose cache to manage: its URL or address.")(func)
    return func


@click.group()
def cache() -> None:
    """Manage the image cache of a node."""


@cache.command("list-cached")
@_node_options
def list_cached(host: str, token: str | None, timeout: float) -> None:
    """List the images in the node's cache."""
    api = NodeApi(host, token, timeout)
    cached = api.state()["cached_images"]
    if not cached:
        console.print(f"No cached images on {api.url}.")
        return
    table = Table(title=f"Cached images on {api.url}")
    table.add_column("ID", no_wrap=True, min_width=36)
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Last accessed (UTC)")
    table.add_column("Last modified (UTC)")
    table.add_column("Hits", justify="right", no_wrap=True)
    for entry in cached:
        table.add_row(
            entry["image_id"], f"{entry['size']:,}", _time(entry["last_accessed"]),
            _time(entry["last_modified"]), str(entry["hits"]),
        )
    console.print(table)


def _time(seconds: float) -> str:
    if not seconds:
        return "N/A"
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@cache.command("list-queued")
@_node_options
def list_queued(host: str, token: str | None, timeout: float) -> None:
    """List the images queued for caching on the node."""
    api = NodeApi(host, token, timeout)
    queued = api.state()["queued_images"]
    if not queued:
        console.print(f"No queued images on {api.url}.")
        return
    table = Table(title=f"Images queued for caching on {api.url}")
    table.add_column("ID", no_wrap=True, min_width=36)
    for image_id in queued:
        table.add_row(image_id)
    console.print(table)


@cache.command("queue-image")
@click.argument("image_id")
@_node_options
def queue_image(image_id: str, host: str, token: str | None, timeout: float) -> None:
    """Queue an image for caching; the node starts fetching it at once."""
    api = NodeApi(host, token, timeout)
    api.call("PUT", f"/v2/cache/{image_id}")
    console.print(f"Image {image_id} queued for caching on {api.url}.")


@cache.command("delete-cached-image")
@click.argument("image_id")
@_node_options
def delete_cached_image(image_id: str, host: str, token: str | None, timeout: float) -> None:
    """Remove an image from the node's cache."""
    api = NodeApi(host, token, timeout)
    if image_id not in {e["image_id"] for e in api.state()["cached_images"]}:
        raise click.ClickException(f"Image {image_id} is not cached on {api.url}.")
    api.call("DELETE", f"/v2/cache/{image_id}")
    console.print(f"Image {image_id} removed from the cache of {api.url}.")


@cache.command("delete-all-cached-images")
@_node_options
def delete_all_cached_images(host: str, token: str | None, timeout: float) -> None:
    """Remove every image from the node's cache (the queue stays)."""
    api = NodeApi(host, token, timeout)
    count = len(api.state()["cached_images"])
    api.call("DELETE", "/v2/cache", headers={CLEAR_TARGET_HEADER: "cache"})
    console.print(f"Removed {count} cached image(s) from {api.url}.")


@cache.command("delete-queued-image")
@click.argument("image_id")
@_node_options
def delete_queued_image(image_id: str, host: str, token: str | None, timeout: float) -> None:
    """Take an image off the node's caching queue."""
    api = NodeApi(host, token, timeout)
    if image_id not in api.state()["queued_images"]:
        raise click.ClickException(f"Image {image_id} is not queued on {api.url}.")
    api.call("DELETE", f"/v2/cache/{image_id}")
    console.print(f"Image {image_id} removed from the caching queue of {api.url}.")


@cache.command("delete-all-queued-images")
@_node_options
def delete_all_queued_images(host: str, token: str | None, timeout: float) -> None:
    """Empty the node's caching queue (cached images stay)."""
    api = NodeApi(host, token, timeout)
    count = len(api.state()["queued_images"])
    api.call("DELETE", "/v2/cache", headers={CLEAR_TARGET_HEADER: "queue"})
    console.print(f"Removed {count} image(s) from the caching queue of {api.url}.")


# -- the jobs, run once on this node ----------------------------------------------------


def _local_options(func: Callable[..., None]) -> Callable[..., None]:
    func = click.option("--data-dir", "data_dir", type=click.Path(),
                        help="Where SQLite and images live.")(func)
    func = click.option("--config-file", "config_files", multiple=True,
                        type=click.Path(exists=True),
                        help="The node's INI file (repeatable).")(func)
    return func


def _run_locally(config_files: tuple[str, ...], data_dir: str | None,
                 job: Callable[[Any], Any]) -> Any:
    from glimpse.bootstrap import build_node
    from glimpse.cli.main import settings_from_options

    settings = settings_from_options(config_files, data_dir=data_dir)
    if settings.image_cache_dir is None:
        raise click.ClickException("image_cache_dir is not set: this node has no image cache.")
    node = build_node(settings)
    assert node.cache is not None

    async def run() -> Any:
        try:
            await asyncio.to_thread(node.cache.prepare)  # type: ignore[union-attr]
            return await job(node.services.cache)
        finally:
            await node.stop()

    try:
        return asyncio.run(run())
    except ValueError as exc:  # the directory belongs to another node
        raise click.ClickException(str(exc)) from None


@cache.command("prune")
@_local_options
def prune(config_files: tuple[str, ...], data_dir: str | None) -> None:
    """Remove least recently used images until the cache is under image_cache_max_size."""
    result = _run_locally(config_files, data_dir, lambda svc: svc.prune_once())
    console.print(f"Pruned {result.files} file(s), {result.bytes:,} byte(s).")


@cache.command("clean")
@_local_options
def clean(config_files: tuple[str, ...], data_dir: str | None) -> None:
    """Remove stalled fills, invalid entries and copies of deleted or changed images."""
    result = _run_locally(config_files, data_dir, lambda svc: svc.clean_once())
    console.print(f"Removed {result.stalled} stalled and {result.invalid} invalid entries.")


@cache.command("prefetch")
@_local_options
def prefetch(config_files: tuple[str, ...], data_dir: str | None) -> None:
    """Fetch every queued image into the cache now."""

    async def job(service: Any) -> Any:
        queued = await service.cache.queued()
        with console.status(f"Fetching {len(queued)} queued image(s)..."):
            return await service.prefetch_once()

    result = _run_locally(config_files, data_dir, job)
    table = Table(title="Prefetch")
    table.add_column("ID", no_wrap=True, min_width=36)
    table.add_column("Result")
    for label, ids in (("cached", result.cached), ("failed, still queued", result.failed),
                       ("taken off the queue", result.dropped)):
        for image_id in ids:
            table.add_row(image_id, label)
    console.print(table if table.row_count else "No queued images.")
