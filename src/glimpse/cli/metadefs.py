"""``glimpse metadefs``: load, export and unload the metadata definitions catalogue
(what ``glance-manage db load_metadefs / export_metadefs / unload_metadefs`` do).

These work on the database directly, as the operator, without going through policy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console
from rich.table import Table

from glimpse.config import Settings
from glimpse.db.metadefs import LoadMode
from glimpse.domain.errors import InvalidInput
from glimpse.domain.metadefs import NamespaceContent
from glimpse.metadefs import catalogue
from glimpse.services.metadefs import MetadefService

T = TypeVar("T")

_config_file = click.option(
    "--config-file", "config_files", multiple=True, type=click.Path(exists=True),
    help="INI file with Glance's sections and options (repeatable).",
)
_data_dir = click.option("--data-dir", "data_dir", type=click.Path(),
                         help="Where SQLite and images live.")


def _run(
    config_files: tuple[str, ...], data_dir: str | None,
    work: Callable[[MetadefService], Awaitable[T]],
) -> T:
    """Bring the database to the newest schema, then run ``work`` on the catalogue."""
    from glimpse.bootstrap import build_node
    from glimpse.cli.main import settings_from_options
    from glimpse.db.sql import migrate

    settings: Settings = settings_from_options(config_files, data_dir=data_dir)
    node = build_node(settings)

    async def run() -> T:
        try:
            await migrate.upgrade(node.db)
            return await work(node.services.metadefs)
        finally:
            await node.stop()

    return asyncio.run(run())


@click.group()
def metadefs() -> None:
    """The metadata definitions catalogue."""


@metadefs.command("load")
@_config_file
@_data_dir
@click.option("--path", type=click.Path(exists=True, path_type=Path),
              help="A catalogue file or a directory of them; default: the files shipped "
              "with Glimpse (image properties of the guide's Appendix B).")
@click.option("--merge", is_flag=True,
              help="Add what is missing to namespaces that already exist.")
@click.option("--prefer-new", is_flag=True,
              help="With --merge: also replace definitions that differ from the files.")
@click.option("--overwrite", is_flag=True,
              help="Replace namespaces that already exist with the files' version.")
def load(config_files: tuple[str, ...], data_dir: str | None, path: Path | None,
         merge: bool, prefer_new: bool, overwrite: bool) -> None:
    """Load catalogue files; namespaces that exist are skipped unless told otherwise."""
    if overwrite and merge:
        raise click.UsageError("--overwrite and --merge exclude each other")
    if prefer_new and not merge:
        raise click.UsageError("--prefer-new goes with --merge")
    mode = (LoadMode.OVERWRITE if overwrite else LoadMode.PREFER_NEW if prefer_new
            else LoadMode.MERGE if merge else LoadMode.SKIP)
    try:
        documents = catalogue.read_documents(path) if path else catalogue.shipped_documents()
        contents = [catalogue.parse(doc, source) for source, doc in documents]
    except InvalidInput as exc:
        raise click.ClickException(exc.message) from exc

    async def work(service: MetadefService) -> list[tuple[str, str]]:
        return await service.load_catalogue(contents, mode)

    outcomes = _run(config_files, data_dir, work)
    table = Table(title="Metadata definitions loaded")
    table.add_column("namespace")
    table.add_column("result")
    for namespace, outcome in outcomes:
        table.add_row(namespace, outcome)
    Console().print(table)


@metadefs.command("export")
@_config_file
@_data_dir
@click.option("--path", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write one JSON file per namespace to.")
def export(config_files: tuple[str, ...], data_dir: str | None, path: Path) -> None:
    """Write every namespace of the catalogue to a JSON file."""

    async def work(service: MetadefService) -> list[NamespaceContent]:
        return await service.export_catalogue()

    path.mkdir(parents=True, exist_ok=True)
    for content in _run(config_files, data_dir, work):
        target = path / catalogue.file_name(content.namespace.namespace)
        target.write_text(
            json.dumps(catalogue.to_document(content), indent=4, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        click.echo(str(target))


@metadefs.command("unload")
@_config_file
@_data_dir
@click.confirmation_option(prompt="Delete every namespace and resource type of the catalogue?")
def unload(config_files: tuple[str, ...], data_dir: str | None) -> None:
    """Empty the catalogue: every namespace (shipped or not) and resource type."""

    async def work(service: MetadefService) -> int:
        return await service.unload_catalogue()

    click.echo(f"removed {_run(config_files, data_dir, work)} namespaces")
