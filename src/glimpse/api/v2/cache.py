"""``/v2/cache``: the image cache of the node answering (API 2.14, 2.16, 2.18).

Shapes as Glance: ``GET`` lists ``cached_images`` (image_id, hits, last_accessed,
last_modified, size; times in seconds since the epoch) and ``queued_images`` (ids);
``PUT /v2/cache/{id}`` is 202; deletes are 204; ``POST /v2/cache/prune`` returns
``total_files_pruned`` and ``total_bytes_pruned``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.http import context, json_response
from glimpse.api.state import state

CLEAR_TARGET_HEADER = "x-image-cache-clear-target"


async def show_cache(request: Request) -> Response:
    cache = await state(request).services.cache.state(context(request))
    return json_response(
        {
            "cached_images": [
                {
                    "image_id": entry.image_id,
                    "hits": entry.hits,
                    "last_accessed": entry.last_accessed,
                    "last_modified": entry.last_modified,
                    "size": entry.size,
                }
                for entry in cache.cached
            ],
            "queued_images": cache.queued,
        }
    )


async def queue_image(request: Request) -> Response:
    await state(request).services.cache.queue_image(
        context(request), request.path_params["image_id"]
    )
    return Response(status_code=202)


async def delete_entry(request: Request) -> Response:
    await state(request).services.cache.delete_entry(
        context(request), request.path_params["image_id"]
    )
    return Response(status_code=204)


async def clear(request: Request) -> Response:
    await state(request).services.cache.clear(
        context(request), request.headers.get(CLEAR_TARGET_HEADER, "")
    )
    return Response(status_code=204)


async def clean(request: Request) -> Response:
    await state(request).services.cache.clean(context(request))
    return Response(status_code=200)


async def prune(request: Request) -> Response:
    result = await state(request).services.cache.prune(context(request))
    return json_response(
        {"total_files_pruned": result.files, "total_bytes_pruned": result.bytes}
    )

