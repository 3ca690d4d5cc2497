"""``/v2/images/{id}/file``: streamed upload and (ranged) download."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from glimpse.api.http import context
from glimpse.api.state import state
from glimpse.domain.errors import (
    InvalidInput,
    RangeNotSatisfiable,
    StoreNotFound,
    UnsupportedMediaType,
)
from glimpse.services.image_data import ByteRange

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)\s*-\s*(\d+)\s*/\s*(\d+|\*)\s*$")


def required_octet_stream(request: Request) -> None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/octet-stream":
        raise UnsupportedMediaType(
            "Image data must be sent with Content-Type: application/octet-stream"
        )


async def upload(request: Request) -> Response:
    st = state(request)
    required_octet_stream(request)
    declared = declared_size(request)
    store_id = request.headers.get("x-image-meta-store")
    if store_id is not None and not st.options.multistore:
        store_id = None
    try:
        await st.services.image_data.upload(
            context(request),
            request.path_params["image_id"],
            request_chunks(request),
            declared_size=declared,
            store_id=store_id,
        )
    except StoreNotFound as exc:
        raise InvalidInput(exc.message) from None
    return Response(status_code=204)


async def request_chunks(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise InvalidInput("The client disconnected before sending all image data.") from None


def declared_size(request: Request) -> int | None:
    value = request.headers.get("x-openstack-image-size")
    if value is None:
        return None
    if not value.isdigit():
        raise InvalidInput("x-openstack-image-size must be a non-negative integer.")
    return int(value)


async def download(request: Request) -> Response:
    st = state(request)
    byte_range = _parse_range(request)
    data = await st.services.image_data.download(
        context(request), request.path_params["image_id"], byte_range
    )
    if data is None:
        return Response(status_code=204)
    headers = {"Content-Length": str(data.length)}
    if data.image.checksum and not data.partial:
        headers["Content-MD5"] = data.image.checksum
    status = 200
    if data.partial:
        status = 206
        end = data.offset + data.length - 1
        headers["Content-Range"] = f"bytes {data.offset}-{end}/{data.total}"
    body = data.store.read(data.location, data.offset, data.length)
    # The first chunk is read before any header goes out: a store that cannot serve
    # answers 503 with its error, rather than 200 and then a cut-off body.
    try:
        first = await anext(body)
    except StopAsyncIteration:
        first = b""
    return StreamingResponse(
        _prepend(first, body), status_code=status, headers=headers,
        media_type="application/octet-stream",
    )


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    # Not kept for the rest of a long download: 16 concurrent ones held 16 MiB more.
    del first
    async for chunk in rest:
        yield chunk


def _parse_range(request: Request) -> ByteRange | None:
    # As Glance: several ranges are 400, a malformed range is 416.
    header = request.headers.get("range")
    if header is not None:
        if "," in header:
            raise InvalidInput(
                "Requests with multiple ranges are not supported; make several "
                "single-range requests instead."
            )
        match = _RANGE.match(header)
        if match is None or (not match.group(1) and not match.group(2)):
            raise RangeNotSatisfiable(f"Invalid Range header: {header}")
        start = int(match.group(1)) if match.group(1) else None
        end = int(match.group(2)) if match.group(2) else None
        if start is not None and end is not None and end < start:
            raise RangeNotSatisfiable(f"Invalid Range header: {header}")
        return ByteRange(start, end)
    # Glance also honours the legacy request Content-Range.
    legacy = request.headers.get("content-range")
    if legacy is not None:
        match = _CONTENT_RANGE.match(legacy)
        if match is None or int(match.group(2)) < int(match.group(1)):
            raise RangeNotSatisfiable(f"Invalid Content-Range header: {legacy}")
        return ByteRange(int(match.group(1)), int(match.group(2)))
    return None
