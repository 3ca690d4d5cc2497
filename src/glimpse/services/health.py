"""Is this node able to serve: the database answers, and which stores take writes."""

from __future__ import annotations

from dataclasses import dataclass

from glimpse.db.base import ImageRepository
from glimpse.stores.registry import StoreRegistry


@dataclass(frozen=True)
class Health:
    database_ok: bool
    stores: dict[str, tuple[bool, bool]]  # id -> (readable, writable)

    @property
    def ok(self) -> bool:
        return self.database_ok


class HealthService:
    def __init__(self, repo: ImageRepository, stores: StoreRegistry) -> None:
        self.repo = repo
        self.stores = stores

    async def check(self) -> Health:
        try:
            await self.repo.ping()
            database_ok = True
        except Exception:
            database_ok = False
        stores = {}
        for store in self.stores.all():
            state = await store.health()
            stores[store.id] = (state.ok, state.writable)
        return Health(database_ok=database_ok, stores=stores)
