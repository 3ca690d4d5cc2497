"""``glimpse``: the operator's command line (serve, db)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys

import click

from glimpse.config import Settings, environment_config_files, load_settings


def settings_from_options(config_files: tuple[str, ...], **overrides: object) -> Settings:
    files = list(config_files) or environment_config_files()
    return load_settings(files, {k: v for k, v in overrides.items() if v is not None})


@click.group()
def main() -> None:
    """Glimpse: an image service speaking the OpenStack Image (Glance) v2 API."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@main.command()
@click.option("--config-file", "config_files", multiple=True, type=click.Path(exists=True),
              help="INI file with Glance's sections and options (repeatable).")
@click.option("--host", "bind_host", help="Address to listen on (bind_host).")
@click.option("--port", "bind_port", type=int, help="Port to listen on (bind_port).")
@click.option("--data-dir", "data_dir", type=click.Path(), help="Where SQLite and images live.")
@click.option("--workers", type=int, help="Server processes.")
def serve(config_files: tuple[str, ...], bind_host: str | None, bind_port: int | None,
          data_dir: str | None, workers: int | None) -> None:
    """Run the API server."""
    import uvicorn

    settings = settings_from_options(config_files, bind_host=bind_host, bind_port=bind_port,
                         data_dir=data_dir, workers=workers)
    if settings.auth_strategy == "noauth" and not _is_loopback(settings.bind_host):
        if not settings.allow_insecure_bind:
            raise click.ClickException(
                f"Refusing to listen on {settings.bind_host} without authentication: noauth "
                "makes every caller an administrator. Use auth_strategy = tokens or "
                "keystone, or set [glimpse] allow_insecure_bind = true."
            )
    from glimpse.bootstrap import build_node

    if settings.workers > 1:
        # Each worker builds its own node from the same configuration; migrations and
        # the recovery of interrupted work run once here first, so the workers do not
        # race to apply them (nor take each other's work for interrupted work).
        _run_migrations(settings, recover=True)
        import os

        os.environ["GLIMPSE_CONFIG"] = ":".join(config_files)
        os.environ["GLIMPSE_OVERRIDES"] = repr(
            {"bind_host": bind_host, "bind_port": bind_port, "data_dir": data_dir}
        )
        uvicorn.run(
            "glimpse.cli.worker:app", factory=True, host=settings.bind_host,
            port=settings.bind_port, workers=settings.workers, log_level="warning",
            access_log=False, lifespan="on",
        )
        return
    node = build_node(settings)
    click.echo(f"glimpse listening on http://{settings.bind_host}:{settings.bind_port}/ "
               f"(data in {settings.data_dir.resolve()})", err=True)
    uvicorn.run(node.app, host=settings.bind_host, port=settings.bind_port,
                log_level="warning", access_log=False, lifespan="on")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run_migrations(settings: Settings, *, recover: bool = False) -> None:
    from glimpse.bootstrap import build_node
    from glimpse.db.sql import migrate

    node = build_node(settings)

    async def run() -> None:
        try:
            await migrate.upgrade(node.db)
            if recover:
                for driver in node.file_drivers:
                    driver.prepare()
                await node.recover_interrupted_work()
        finally:
            await node.stop()

    asyncio.run(run())


@main.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--config-file", "config_files", multiple=True, type=click.Path(exists=True))
@click.option("--data-dir", "data_dir", type=click.Path())
def db_upgrade(config_files: tuple[str, ...], data_dir: str | None) -> None:
    """Apply every pending migration."""
    settings = settings_from_options(config_files, data_dir=data_dir)
    _run_migrations(settings)
    click.echo("database is at the newest schema")


@db.command("version")
@click.option("--config-file", "config_files", multiple=True, type=click.Path(exists=True))
@click.option("--data-dir", "data_dir", type=click.Path())
def db_version(config_files: tuple[str, ...], data_dir: str | None) -> None:
    """Print the schema revision of the database and of this release."""
    from glimpse.bootstrap import build_node
    from glimpse.db.sql import migrate

    node = build_node(settings_from_options(config_files, data_dir=data_dir))

    async def run() -> str | None:
        try:
            return await migrate.current_revision(node.db)
        finally:
            await node.stop()

    click.echo(f"database: {asyncio.run(run()) or 'empty'}; release: {migrate.head_revision()}")


def _register_groups() -> None:
    from glimpse.cli.stores import stores

    main.add_command(stores)
    from glimpse.cli.metadefs import metadefs

    main.add_command(metadefs)
    from glimpse.cli.cache import cache

    main.add_command(cache)
    from glimpse.cli.scrub import purge, purge_images_table, scrub

    main.add_command(scrub)
    db.add_command(purge)
    db.add_command(purge_images_table)


_register_groups()

if __name__ == "__main__":
    sys.exit(main())
