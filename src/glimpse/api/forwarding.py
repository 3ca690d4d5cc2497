"""Replaying a request on the node that holds an image's staged data.

Without a shared staging area, ``glance-direct`` data lives on the node that took the
``PUT /stage``; that node records its ``worker_self_reference_url`` on the image
(``os_glance_stage_host``). A node asked to import or delete such an image sends the
request there with the caller's own credentials, as Glance does, and answers with what
that node answered.
"""

from __future__ import annotations

import logging

import httpx
from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.errors import error_response

log = logging.getLogger(__name__)

# Set on a replayed request so that a node whose self URL is misconfigured answers it
# locally instead of replaying it again (a loop between two nodes).
FORWARDED_HEADER = "x-glimpse-forwarded-by"
_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# Hop-by-hop and body-framing headers belong to one connection, not to the request.
_NOT_FORWARDED = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
    "te", "trailer", "proxy-authorization", "proxy-connection", "expect",
})
# The request id is not among them: the replay carries ours, and the remote keeps it.
_ANSWER_HEADERS = ("content-type", "location")


def was_forwarded(request: Request) -> bool:
    return FORWARDED_HEADER in request.headers


async def forward(
    request: Request, host: str, body: bytes | None, *, self_url: str | None, request_id: str
) -> Response:
    """The remote node's answer to this request, or 504/502 when it cannot be reached
    (the replay carries this request's id, so both nodes' logs show one id)."""
    url = host.rstrip("/") + request.url.path
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
    headers[FORWARDED_HEADER] = self_url or "unknown"
    headers["x-openstack-request-id"] = request_id
    log.info("replaying %s %s on stage host %s", request.method, request.url.path, host)
    try:
        async with httpx.AsyncClient(timeout=_TIMEOUT, trust_env=False) as client:
            answer = await client.request(request.method, url, content=body, headers=headers)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        log.error("stage host %s is unreachable: %s", host, exc)
        return error_response(request, 504, f"Stage host {host} is unavailable.")
    except httpx.HTTPError as exc:
        log.error("replay on stage host %s failed: %s", host, exc)
        return error_response(request, 502, f"Stage host {host} is unavailable.")
    kept = {k: answer.headers[k] for k in _ANSWER_HEADERS if k in answer.headers}
    return Response(answer.content, answer.status_code, headers=kept)
