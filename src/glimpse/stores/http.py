"""A read-only store for locations that point at web servers (Glance's ``http`` store).

Nothing is ever written: images get such a location only through the locations API
(``POST /v2/images/{id}/locations`` or a ``/locations`` PATCH). Reading is a streaming
GET (with a ``Range`` header for an offset); deleting the image leaves the web server
alone, as Glance does.

    location: the URL itself, http://host[:port]/path or https://...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from glimpse.domain.errors import StoreUnavailable
from glimpse.stores.base import StoreHealth, WrittenData

_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class HttpStoreDriver:
    """Reads images from web servers; refuses writes."""

    type = "http"

    def __init__(self, *, verify: bool | str = True, proxies: dict[str, str] | None = None):
        self.verify = verify
        self.proxies = dict(proxies or {})

    def _client(self) -> httpx.AsyncClient:
        mounts = {f"{scheme}://": httpx.AsyncHTTPTransport(proxy=url, verify=self.verify)
                  for scheme, url in self.proxies.items()}
        return httpx.AsyncClient(verify=self.verify, timeout=_TIMEOUT, mounts=mounts,
                                 follow_redirects=True)

    async def write(self, image_id: str, chunks: AsyncIterator[bytes]) -> WrittenData:
        raise StoreUnavailable("The http store is read-only")

    async def read(
        self, location: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        try:
            async with self._client() as client, client.stream(
                "GET", location, headers=headers
            ) as response:
                if response.status_code >= 400:
                    raise StoreUnavailable(
                        f"{location} answered {response.status_code}"
                    )
                skip = offset if offset and response.status_code != 206 else 0
                remaining = length
                async for chunk in response.aiter_bytes():
                    if skip:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                    if remaining is not None:
                        chunk = chunk[:remaining]
                        remaining -= len(chunk)
                    if chunk:
                        yield chunk
                    if remaining == 0:
                        return
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"Could not read {location}: {exc}") from exc

    async def size(self, location: str) -> int | None:
        """Content-Length of a HEAD (Glance's http store asks the same way)."""
        try:
            async with self._client() as client:
                response = await client.head(location)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"Could not reach {location}: {exc}") from exc
        if response.status_code >= 400:
            raise StoreUnavailable(f"{location} answered {response.status_code}")
        length = response.headers.get("content-length", "")
        return int(length) if length.isdigit() else None

    async def delete(self, location: str) -> None:
        """The web server's file is not ours to remove."""

    def local_path(self, location: str) -> Path | None:
        return None

    async def health(self) -> StoreHealth:
        return StoreHealth(ok=True, writable=False, detail="read-only")

    def properties(self) -> dict[str, object]:
        return {}

    async def list_locations(self) -> list[str]:
        return []

    def owns(self, location: str) -> bool:
        return location.startswith(("http://", "https://"))
