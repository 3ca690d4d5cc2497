"""``glimpse stores``: look after the stores' contents (orphaned data)."""

from __future__ import annotations

import asyncio

import click
from rich.console import Console
from rich.table import Table

from glimpse.config import Settings


@click.group()
def stores() -> None:
    """Store maintenance."""


@stores.command("orphans")
@click.option("--config-file", "config_files", multiple=True, type=click.Path(exists=True))
@click.option("--data-dir", "data_dir", type=click.Path())
@click.option("--delete", is_flag=True, help="Remove the orphaned data instead of listing it.")
def orphans(config_files: tuple[str, ...], data_dir: str | None, delete: bool) -> None:
    """List (or remove) stored data that no image points at."""
    from glimpse.bootstrap import build_node
    from glimpse.cli.main import settings_from_options

    settings: Settings = settings_from_options(config_files, data_dir=data_dir)
    node = build_node(settings)

    async def run() -> list[tuple[str, str]]:
        try:
            await node.start()
            found = await node.services.stores.orphans()
            if delete:
                for store_id, url in found:
                    await node.stores.get(store_id).delete(url)
            return found
        finally:
            await node.stop()

    found = asyncio.run(run())
    table = Table(title="Removed orphans" if delete else "Orphaned data")
    table.add_column("store")
    table.add_column("location")
    for store_id, url in found:
        table.add_row(store_id, url)
    Console().print(table if found else "no orphaned data")
