"""Image sharing: the owner adds and removes members; each member accepts or rejects."""

from __future__ import annotations

from glimpse.db.base import MemberRepository
from glimpse.domain.errors import Forbidden, InvalidInput, MemberNotFound
from glimpse.domain.image import MEMBER_STATUSES, Image, Member
from glimpse.policy.context import RequestContext
from glimpse.services.images import ImageService


def _require_shared(image: Image) -> None:
    # Glance: only shared images have members; asking about the members of a visible
    # image of another visibility is 403 (the memberships stay, inert, until it is
    # shared again).
    if image.visibility != "shared":
        raise Forbidden(
            f"Only shared images have members; image {image.id} is '{image.visibility}'."
        )


class MemberService:
    def __init__(self, images: ImageService, members: MemberRepository, quota: int) -> None:
        self.images = images
        self.members = members
        self.quota = quota

    async def add_member(self, ctx: RequestContext, image_id: str, member_id: str) -> Member:
        image = await self.images.get_image(ctx, image_id)
        target = await self.images.target(ctx, image)
        self.images.policy.authorize(ctx, "add_member", target)
        _require_shared(image)
        if not member_id or len(member_id) > 255:
            raise InvalidInput("Member must be a project id of 1 to 255 characters.")
        return await self.members.add(Member(image_id=image_id, member_id=member_id), self.quota)

    async def list_members(self, ctx: RequestContext, image_id: str) -> list[Member]:
        image = await self.images.get_image(ctx, image_id)
        target = await self.images.target(ctx, image)
        self.images.policy.authorize(ctx, "get_members", target)
        _require_shared(image)
        members = await self.members.for_image(image_id)
        if ctx.is_admin or ctx.project_id == image.owner:
            return members
        # A member sees only its own membership, as Glance.
        return [m for m in members if m.member_id == ctx.project_id]

    async def get_member(self, ctx: RequestContext, image_id: str, member_id: str) -> Member:
        image = await self.images.get_image(ctx, image_id)
        target = await self.images.target(ctx, image)
        self.images.policy.authorize(ctx, "get_member", target)
        if image.visibility != "shared":  # Glance hides it: 404, not 403
            raise MemberNotFound(f"Member {member_id} not found for image {image_id}")
        member = await self.members.get(image_id, member_id)
        visible = ctx.is_admin or ctx.project_id in (image.owner, member_id)
        if member is None or not visible:
            raise MemberNotFound(f"Member {member_id} not found for image {image_id}")
        return member

    async def update_member(
        self, ctx: RequestContext, image_id: str, member_id: str, status: str
    ) -> Member:
        image = await self.images.get_image(ctx, image_id)
        target = await self.images.target(ctx, image)
        _require_shared(image)
        member = await self.members.get(image_id, member_id)
        if member is None:
            raise MemberNotFound(f"Member {member_id} not found for image {image_id}")
        target = {**target, "member_id": member_id}
        self.images.policy.authorize(ctx, "modify_member", target)
        if ctx.project_id != member_id and not ctx.is_admin:
            raise Forbidden("Only the member itself may change its status.")
        if status not in MEMBER_STATUSES:
            raise InvalidInput(
                f"Status must be one of {', '.join(MEMBER_STATUSES)}, not {status!r}"
            )
        updated = await self.members.set_status(image_id, member_id, status)
        if updated is None:
            raise MemberNotFound(f"Member {member_id} not found for image {image_id}")
        return updated

    async def delete_member(self, ctx: RequestContext, image_id: str, member_id: str) -> None:
        image = await self.images.get_image(ctx, image_id)
        target = await self.images.target(ctx, image)
        self.images.policy.authorize(ctx, "delete_member", target)
        _require_shared(image)
        if not await self.members.delete(image_id, member_id):
            raise MemberNotFound(f"Member {member_id} not found for image {image_id}")
