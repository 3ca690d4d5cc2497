"""What every handler may read: the services, the schemas and the API-level options."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from glimpse.api.v2.schemas import Schemas
from glimpse.auth.base import Authenticator
from glimpse.services.bundle import Services


@dataclass(frozen=True)
class ApiOptions:
    limit_param_default: int
    api_limit_max: int
    show_image_direct_url: bool
    show_multiple_locations: bool
    max_request_body_size: int
    max_request_id_length: int
    public_endpoint: str | None
    multistore: bool
    # Store id -> weight: images list their locations (and stores) highest weight first.
    store_weights: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiState:
    services: Services
    schemas: Schemas
    options: ApiOptions
    authenticator: Authenticator


def state(request: Request) -> ApiState:
    value = request.app.state.glimpse
    assert isinstance(value, ApiState)
    return value
