"""``glimpse scrub`` and ``glimpse db purge``: the end of a deleted image's life.

``glimpse scrub`` is Glance's ``glance-scrubber``: one pass over the pending_delete
images (``--daemon``: a pass every ``wakeup_time`` seconds), or ``--restore ID`` to
bring a pending_delete image back. ``glimpse db purge`` and ``glimpse db
purge-images-table`` are Glance's ``glance-manage db purge`` and ``db
purge_images_table`` (Glance's underscore option spellings are accepted too).
All of them work on the database and stores of the configuration files given, the
same ones ``glimpse serve`` uses, and can run beside running servers.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import click

from glimpse.domain.errors import GlimpseError

if TYPE_CHECKING:  # bootstrap is imported when a command runs, not by `glimpse --help`
    from glimpse.bootstrap import Node

T = TypeVar("T")

_config_file = click.option(
    "--config-file", "config_files", multiple=True, type=click.Path(exists=True),
    help="INI file with Glance's sections and options (repeatable).",
)
_data_dir = click.option("--data-dir", "data_dir", type=click.Path(),
                         help="Where SQLite and images live.")


def _run(
    config_files: tuple[str, ...], data_dir: str | None, work: Callable[[Node], Awaitable[T]]
) -> T:
    """Bring the database to the newest schema, then run ``work`` on a node that serves
    nothing; domain errors become a one-line error and exit status 1."""
    from glimpse.bootstrap import build_node
    from glimpse.cli.main import settings_from_options
    from glimpse.db.sql import migrate

    node = build_node(settings_from_options(config_files, data_dir=data_dir))

    async def run() -> T:
        try:
            await migrate.upgrade(node.db)
            return await work(node)
        finally:
            await node.stop()

    try:
        return asyncio.run(run())
    except GlimpseError as exc:
        raise click.ClickException(exc.message) from None


@click.command()
@_config_file
@_data_dir
@click.option("--daemon", "-D", is_flag=True,
              help="Keep running: a pass every wakeup_time seconds.")
@click.option("--restore", metavar="IMAGE_ID",
              help="Bring this pending_delete image back to active instead of scrubbing.")
def scrub(config_files: tuple[str, ...], data_dir: str | None, daemon: bool,
          restore: str | None) -> None:
    """Remove the data of images deleted with delayed_delete (pending_delete)."""
    if restore and daemon:
        raise click.UsageError("--restore and --daemon exclude each other.")

    async def work(node: Node) -> None:
        assert node.scrubber is not None
        if restore:
            image = await node.scrubber.restore(restore)
            click.echo(f"image {image.id} restored: {image.status}, "
                       f"{len(image.locations)} location(s)")
            return
        if daemon:
            # SIGTERM ends the loop like Ctrl-C: the image being scrubbed is released.
            task = asyncio.current_task()
            assert task is not None
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
            try:
                await node.scrubber.run_forever()
            except asyncio.CancelledError:
                click.echo("scrubber stopped", err=True)
            return
        report = await node.scrubber.scrub_once()
        click.echo(f"scrubbed {len(report.scrubbed)} image(s); {len(report.failed)} left "
                   "pending_delete (retried next pass)")

    try:
        _run(config_files, data_dir, work)
    except KeyboardInterrupt:
        click.echo("scrubber stopped", err=True)


def _age_option(default: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option(
        "--age-in-days", "--age_in_days", "age_in_days", type=int, default=default,
        show_default=True, help="Purge rows of images deleted more than this many days ago.",
    )


_max_rows = click.option(
    "--max-rows", "--max_rows", "max_rows", type=int, default=100, show_default=True,
    help="Rows deleted per transaction; -1: all in one.",
)


def _check(age_in_days: int, max_rows: int) -> None:
    from glimpse.services.purge import check_purge_arguments

    try:
        check_purge_arguments(age_in_days, max_rows)
    except GlimpseError as exc:
        raise click.UsageError(exc.message) from None


@click.command("purge")
@_config_file
@_data_dir
@_age_option(30)
@_max_rows
def purge(config_files: tuple[str, ...], data_dir: str | None, age_in_days: int,
          max_rows: int) -> None:
    """Hard-delete the rows of images deleted more than --age-in-days ago (locations and
    other satellites) and of expired tasks. The images rows stay, so image ids are never
    used twice: see purge-images-table."""
    _check(age_in_days, max_rows)

    async def work(node: Node) -> dict[str, int]:
        assert node.purger is not None
        return await node.purger.purge(age_in_days, max_rows)

    counts = _run(config_files, data_dir, work)
    for table, rows in counts.items():
        click.echo(f"{table}: {rows} row(s) purged")


@click.command("purge-images-table")
@_config_file
@_data_dir
@_age_option(180)
@_max_rows
def purge_images_table(config_files: tuple[str, ...], data_dir: str | None,
                       age_in_days: int, max_rows: int) -> None:
    """Hard-delete the images rows of images deleted more than --age-in-days ago. Their
    ids can then be given to new images, which anything still referring to the old
    image (instances, volumes, caches) would take for it (OSSN-0075)."""
    _check(age_in_days, max_rows)

    async def work(node: Node) -> int:
        assert node.purger is not None
        return await node.purger.purge_images_table(age_in_days, max_rows)

    rows = _run(config_files, data_dir, work)
    click.echo(f"images: {rows} row(s) purged; those image ids may now be used again")
