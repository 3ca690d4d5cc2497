"""The ``glance-download`` import method: copy an image from the image service of another
region, found in the caller's Keystone service catalog, with the caller's token.

The remote image must be active; its disk and container formats and the properties
whose names start with one of ``[glance_download_properties] extra_properties`` come
with it, and the number of bytes received must be the remote image's size.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from glimpse.domain.errors import GlimpseError

_CHUNK = 1024 * 1024


class GlanceDownloadFailed(GlimpseError):
    """The remote image service could not be found, reached or read."""


@dataclass(frozen=True)
class RemoteCaller:
    """What a download needs of the caller; kept in memory only, never in a task."""

    token: str
    catalog: str  # the service catalog auth_token put in X-Service-Catalog (JSON)


@dataclass(frozen=True)
class RemoteImage:
    size: int
    disk_format: str | None
    container_format: str | None
    properties: dict[str, str]


def find_endpoint(catalog: str, region: str, interface: str) -> str:
    """The URL of the ``image`` service in ``region`` for ``interface`` (public,
    internal, admin), from the catalog in either of the shapes Keystone's middleware
    hands on (``publicURL`` keys, or v3 ``interface``/``url`` entries)."""
    try:
        services = json.loads(catalog)
    except ValueError:
        services = None
    if not isinstance(services, list):
        raise GlanceDownloadFailed("The request carried no service catalog to find the "
                                   f"image service of region {region} in.")
    for service in services:
        if not isinstance(service, dict) or service.get("type") != "image":
            continue
        for endpoint in service.get("endpoints") or []:
            if not isinstance(endpoint, dict):
                continue
            where = str(endpoint.get("region") or endpoint.get("region_id") or "")
            if where.lower() != region.lower():
                continue
            url = endpoint.get(f"{interface}URL")
            if url is None and endpoint.get("interface") == interface:
                url = endpoint.get("url")
            if url:
                return str(url).rstrip("/")
    raise GlanceDownloadFailed(
        f"No image service endpoint for region {region} and interface {interface} in "
        "the service catalog."
    )


async def fetch_image(
    endpoint: str, image_id: str, caller: RemoteCaller, prefixes: tuple[str, ...],
    stall_seconds: float,
) -> RemoteImage:
    url = f"{endpoint}/v2/images/{image_id}"
    try:
        async with httpx.AsyncClient(timeout=stall_seconds, trust_env=False) as client:
            response = await client.get(url, headers={"x-auth-token": caller.token})
    except httpx.HTTPError as exc:
        raise GlanceDownloadFailed(f"Cannot reach the image service at {endpoint}: "
                                   f"{exc}") from exc
    if response.status_code != 200:
        raise GlanceDownloadFailed(
            f"The remote image service answered {response.status_code} for image {image_id}."
        )
    try:
        data: dict[str, Any] = response.json()
    except ValueError as exc:
        raise GlanceDownloadFailed("The remote image service sent no JSON image.") from exc
    if data.get("status") != "active":
        raise GlanceDownloadFailed(
            f"Source image status should be active instead of {data.get('status')}"
        )
    size = data.get("size")
    if not isinstance(size, int) or size < 0:
        raise GlanceDownloadFailed(f"Size attribute of remote image {image_id} could not "
                                   "be determined.")
    properties = {
        key: str(value) for key, value in data.items()
        if isinstance(value, str | int | float | bool) and key.startswith(prefixes)
    } if prefixes else {}
    return RemoteImage(
        size=size,
        disk_format=_opt(data.get("disk_format")),
        container_format=_opt(data.get("container_format")),
        properties=properties,
    )


async def download_image(
    endpoint: str, image_id: str, caller: RemoteCaller, path: Path, *, expected: int,
    size_cap: int, stall_seconds: float,
) -> None:
    """Stream the remote image's data into ``path``; refuse more than ``size_cap`` bytes
    and anything but exactly ``expected`` bytes."""
    if expected > size_cap:
        raise GlanceDownloadFailed(
            f"The remote image is {expected} bytes; image_size_cap is {size_cap}."
        )
    url = f"{endpoint}/v2/images/{image_id}/file"
    written = 0
    fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        async with httpx.AsyncClient(timeout=stall_seconds, trust_env=False) as client, \
                client.stream("GET", url, headers={"x-auth-token": caller.token}) as response:
            if response.status_code != 200:
                raise GlanceDownloadFailed(
                    f"The remote image service answered {response.status_code} for the "
                    f"data of image {image_id}."
                )
            async for chunk in response.aiter_raw(_CHUNK):
                written += len(chunk)
                if written > expected:
                    raise GlanceDownloadFailed(
                        f"The remote image sent more than its size of {expected} bytes."
                    )
                await asyncio.to_thread(_write_all, fd, chunk)
        await asyncio.to_thread(os.fsync, fd)
    except httpx.HTTPError as exc:
        raise GlanceDownloadFailed(f"Downloading image {image_id} from {endpoint} failed: "
                                   f"{exc}") from exc
    finally:
        await asyncio.to_thread(os.close, fd)
    if written != expected:
        raise GlanceDownloadFailed(
            f"Downloaded data size {written} is different from expected {expected}."
        )


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view):]


def _opt(value: object) -> str | None:
    return str(value) if value else None
