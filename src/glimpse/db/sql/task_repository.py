"""SQL implementation of ``TaskRepository``: task records and their node leases."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update

from glimpse.db.sql.repositories import utcnow
from glimpse.db.sql.session import Database
from glimpse.db.sql.tables import tasks
from glimpse.domain.image import Task


class SqlTaskRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, task: Task, *, lease_node: str, lease_seconds: int) -> Task:
        now = utcnow()
        task.created_at = task.updated_at = now
        async with self._db.write() as conn:
            await conn.execute(
                insert(tasks).values(
                    id=task.id, type=task.type, status=task.status, owner=task.owner,
                    image_id=task.image_id, user_id=task.user_id, request_id=task.request_id,
                    input=json.dumps(task.input), result=None, message=task.message,
                    created_at=now, updated_at=now, expires_at=None, deleted=False,
                    lease_node=lease_node, lease_expires=now + timedelta(seconds=lease_seconds),
                )
            )
        return task

    async def get(self, task_id: str) -> Task | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    select(tasks).where(tasks.c.id == task_id, tasks.c.deleted.is_(False))
                )
            ).mappings().first()
        return _task(row) if row else None

    async def for_image(self, image_id: str) -> list[Task]:
        now = utcnow()
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(tasks)
                    .where(
                        tasks.c.image_id == image_id,
                        tasks.c.deleted.is_(False),
                        or_(tasks.c.expires_at.is_(None), tasks.c.expires_at > now),
                    )
                    .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
                )
            ).mappings().all()
        return [_task(r) for r in rows]

    async def find(
        self, owner: str | None, *, status: str | None, limit: int, marker: str | None,
        sort_dir: str,
    ) -> list[Task]:
        stmt = select(tasks).where(tasks.c.deleted.is_(False))
        if owner is not None:
            stmt = stmt.where(tasks.c.owner == owner)
        if status is not None:
            stmt = stmt.where(tasks.c.status == status)
        async with self._db.read() as conn:
            if marker is not None:
                mark = (
                    await conn.execute(select(tasks).where(tasks.c.id == marker))
                ).mappings().first()
                if mark is not None:
                    key = (mark["created_at"], mark["id"])
                    if sort_dir == "desc":
                        stmt = stmt.where(or_(tasks.c.created_at < key[0], and_(
                            tasks.c.created_at == key[0], tasks.c.id < key[1])))
                    else:
                        stmt = stmt.where(or_(tasks.c.created_at > key[0], and_(
                            tasks.c.created_at == key[0], tasks.c.id > key[1])))
            order = (
                (tasks.c.created_at.desc(), tasks.c.id.desc()) if sort_dir == "desc"
                else (tasks.c.created_at.asc(), tasks.c.id.asc())
            )
            rows = (await conn.execute(stmt.order_by(*order).limit(limit))).mappings().all()
        return [_task(r) for r in rows]

    async def finish(
        self, task_id: str, status: str, message: str, result: dict[str, object] | None,
        expires_at: datetime,
    ) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id)
                .values(
                    status=status, message=message[:4096],
                    result=json.dumps(result) if result is not None else None,
                    updated_at=utcnow(), expires_at=expires_at, lease_node=None,
                    lease_expires=None,
                )
            )

    async def set_status(self, task_id: str, status: str) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                update(tasks).where(tasks.c.id == task_id)
                .values(status=status, updated_at=utcnow())
            )

    async def renew_lease(self, task_id: str, node: str, lease_seconds: int) -> bool:
        now = utcnow()
        async with self._db.write() as conn:
            result = await conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id, tasks.c.lease_node == node)
                .values(lease_expires=now + timedelta(seconds=lease_seconds))
            )
        return bool(result.rowcount)

    async def claim_abandoned(
        self, node: str, lease_seconds: int, *, include_own: bool,
        task_types: tuple[str, ...],
    ) -> list[Task]:
        now = utcnow()
        running = and_(tasks.c.status.in_(["pending", "processing"]),
                       tasks.c.type.in_(task_types))
        abandoned = or_(tasks.c.lease_expires < now, tasks.c.lease_node.is_(None))
        if include_own:
            # After a restart this node's own tasks have no runner any more.
            abandoned = or_(abandoned, tasks.c.lease_node == node)
        claimed: list[Task] = []
        async with self._db.write() as conn:
            rows = (
                await conn.execute(select(tasks).where(running, abandoned))
            ).mappings().all()
            for row in rows:
                # Guarded on the lease we saw, so two nodes cannot both take it.
                result = await conn.execute(
                    update(tasks)
                    .where(
                        tasks.c.id == row["id"],
                        or_(tasks.c.lease_node == row["lease_node"],
                            tasks.c.lease_node.is_(None)),
                        or_(tasks.c.lease_expires == row["lease_expires"],
                            tasks.c.lease_expires.is_(None)),
                    )
                    .values(lease_node=node,
                            lease_expires=now + timedelta(seconds=lease_seconds))
                )
                if result.rowcount:
                    claimed.append(_task(row))
        return claimed


def _task(row: Any) -> Task:
    return Task(
        id=row["id"], type=row["type"], status=row["status"], owner=row["owner"],
        image_id=row["image_id"], user_id=row["user_id"], request_id=row["request_id"],
        input=json.loads(row["input"] or "{}"),
        result=json.loads(row["result"]) if row["result"] else None,
        message=row["message"] or "", created_at=row["created_at"],
        updated_at=row["updated_at"], expires_at=row["expires_at"],
    )
