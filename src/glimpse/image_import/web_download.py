"""web-download: stream an http(s) URI into a new local file, checked at every hop.

Each hop (the URI, then every redirect target) goes through :func:`check_uri` and
:func:`check_resolved`, and the connection is made to an address that was checked:
the request goes to that IP with the name in ``Host`` and in TLS SNI (the certificate
is verified against the name), so a resolver that answers differently the second
time cannot send us elsewhere. Redirects are followed here, never by httpx.

Errors: a refused or unreachable URI, a non-2xx answer or too many redirects ->
:class:`InvalidInput`; more bytes than ``size_cap`` -> :class:`RequestTooLarge`;
a body that stops early, stalls for ``timeout`` seconds or breaks the protocol ->
:class:`InvalidImageData`. The destination file exists only on success.

Certificates are verified against the system's trust store (OpenSSL's defaults, so
``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` apply), as Glance's urllib does. Proxies from the
environment are not used. Content-Encoding is not decoded (we ask for ``identity``;
what arrives is stored as sent), as Glance does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import pathlib
import ssl
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx

from glimpse.domain.errors import InvalidImageData, InvalidInput, RequestTooLarge
from glimpse.image_import.uri_filter import UriFilter, check_resolved, check_uri

CHUNK_SIZE = 1024 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = "glimpse-web-download"


async def download_to(
    uri: str,
    dest: pathlib.Path,
    *,
    uri_filter: UriFilter,
    size_cap: int,
    timeout: float,  # noqa: ASYNC109 - a stall limit per read, not a deadline
    max_redirects: int,
) -> int:
    """Fetch ``uri`` into ``dest`` (which must not exist) and return the bytes written.

    ``timeout`` bounds connecting and each wait for data; ``max_redirects`` is how many
    redirects are followed before giving up.
    """
    out: BinaryIO = await asyncio.to_thread(open, dest, "xb")
    try:
        async with httpx.AsyncClient(
            trust_env=False,
            verify=await asyncio.to_thread(ssl.create_default_context),
            follow_redirects=False,
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        ) as client:
            current = uri
            for _ in range(max_redirects + 1):
                response = await _request(client, current, uri_filter, timeout)
                try:
                    if response.has_redirect_location:
                        current = _redirect_target(current, response)
                        continue
                    if not response.is_success:
                        raise InvalidInput(
                            f"The web-download source {_shown(current)} answered "
                            f"{response.status_code} {response.reason_phrase}."
                        )
                    written = await _save(response, out, size_cap, timeout, current)
                finally:
                    await response.aclose()
                await asyncio.to_thread(_close, out)
                return written
            raise InvalidInput(
                f"The web-download URI {_shown(uri)} redirected more than {max_redirects} times."
            )
    except BaseException:
        await asyncio.shield(asyncio.to_thread(_discard, out, dest))
        raise


async def _request(
    client: httpx.AsyncClient, uri: str, f: UriFilter, stall: float
) -> httpx.Response:
    """Check ``uri``, resolve and check its host, and GET it from a checked address."""
    check_uri(uri, f)
    url = httpx.URL(uri)
    scheme = url.scheme
    if scheme not in DEFAULT_PORTS:
        raise InvalidInput(
            f"The web-download URI {_shown(uri)} uses scheme {scheme!r}; web-download "
            "fetches http and https only."
        )
    host = _same_host(uri, url)
    port = url.port or DEFAULT_PORTS[scheme]
    addresses = await check_resolved(host, port, f)
    headers = {"Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    error: httpx.HTTPError | None = None
    for address in addresses:
        request = client.build_request(
            "GET",
            url.copy_with(host=address, fragment=None),
            headers=headers,
            extensions=extensions,
        )
        try:
            return await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            error = exc  # try the next address
        except httpx.TimeoutException as exc:
            raise InvalidInput(
                f"The web-download source {_shown(uri)} did not answer within {stall:g} seconds."
            ) from exc
        except httpx.HTTPError as exc:
            raise InvalidInput(
                f"The web-download source {_shown(uri)} could not be read: {_describe(exc)}."
            ) from exc
    raise InvalidInput(
        f"Cannot connect to the web-download source {_shown(uri)}: {_describe(error)}."
    ) from error


async def _save(
    response: httpx.Response, out: BinaryIO, size_cap: int, stall: float, uri: str
) -> int:
    expected = _content_length(response)
    if expected is not None and expected > size_cap:
        raise RequestTooLarge(
            f"The web-download source {_shown(uri)} is {expected} bytes, more than the "
            f"image size cap of {size_cap} bytes."
        )
    received = 0
    pending = bytearray()
    try:
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > size_cap:
                raise RequestTooLarge(
                    f"The web-download source {_shown(uri)} sent more than the image size "
                    f"cap of {size_cap} bytes."
                )
            pending += chunk
            if len(pending) >= CHUNK_SIZE:
                await asyncio.to_thread(out.write, pending)
                pending = bytearray()
    except httpx.TimeoutException as exc:
        raise InvalidImageData(
            f"The web-download source {_shown(uri)} sent no data for {stall:g} seconds "
            f"after {received} bytes."
        ) from exc
    except httpx.HTTPError as exc:
        raise InvalidImageData(
            f"The web-download source {_shown(uri)} stopped after {received}"
            + (f" of {expected}" if expected is not None else "")
            + f" bytes: {_describe(exc)}."
        ) from exc
    await asyncio.to_thread(out.write, pending)
    written = received
    if expected is not None and written != expected:
        raise InvalidImageData(
            f"The web-download source {_shown(uri)} sent {written} bytes but announced {expected}."
        )
    return written


def _redirect_target(current: str, response: httpx.Response) -> str:
    location = response.headers["Location"]
    try:
        target = httpx.URL(current).join(location).copy_with(fragment=None)
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise InvalidInput(
            f"The web-download source {_shown(current)} redirected to an invalid "
            f"location {location!r}."
        ) from exc
    return str(target)


def _same_host(uri: str, url: httpx.URL) -> str:
    """The host as our filter read it; refuses a URI httpx would read differently."""
    parts = urlsplit(uri)
    ours = parts.hostname or ""
    theirs = url.raw_host.decode("ascii").lower()
    if ":" in ours:  # IPv6: compare the addresses
        same = ":" in theirs and ipaddress.ip_address(ours) == ipaddress.ip_address(theirs)
    else:
        same = ours == theirs
    if not same or parts.scheme != url.scheme:
        raise InvalidInput(f"The web-download URI {_shown(uri)} is ambiguous.")
    return ours


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no address"
    return str(exc) or type(exc).__name__


def _shown(uri: str) -> str:
    return repr(uri if len(uri) <= 300 else uri[:300] + "...")


def _close(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()


def _discard(out: BinaryIO, dest: pathlib.Path) -> None:
    try:
        out.close()
    finally:
        dest.unlink(missing_ok=True)
