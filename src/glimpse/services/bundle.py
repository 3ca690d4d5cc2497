"""All services of one running node, built by bootstrap and handed to the API."""

from __future__ import annotations

from dataclasses import dataclass

from glimpse.services.cache import CacheService
from glimpse.services.health import HealthService
from glimpse.services.image_data import ImageDataService
from glimpse.services.images import ImageService
from glimpse.services.imports import ImportService
from glimpse.services.members import MemberService
from glimpse.services.metadefs import MetadefService
from glimpse.services.quotas import QuotaService
from glimpse.services.stores import StoreService


@dataclass(frozen=True)
class Services:
    images: ImageService
    image_data: ImageDataService
    members: MemberService
    stores: StoreService
    health: HealthService
    imports: ImportService
    metadefs: MetadefService
    cache: CacheService
    quotas: QuotaService
