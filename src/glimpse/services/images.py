"""Image records: create, show, list, update, delete, tags, deactivate, reactivate.

Each method reads top to bottom: find the image (invisible -> 404), authorize,
check the rules, write under a compare-and-set guard.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from glimpse.cache.base import ImageCache
from glimpse.db.base import ImageChanges, ImageQuery, ImageRepository, MemberRepository
from glimpse.domain.errors import (
    Conflict,
    Forbidden,
    ImageNotFound,
    InvalidInput,
    LimitExceeded,
    NotFound,
    ProtectedImage,
    StoreUnavailable,
)
from glimpse.domain.image import RESERVED_PREFIX, Image, Location
from glimpse.domain.status import check_transition
from glimpse.policy.context import RequestContext
from glimpse.policy.enforcer import PolicyEnforcer
from glimpse.services.deletion import CLAIM_SECONDS, Claim, DataRemover
from glimpse.services.location_patches import LocationPatch, LocationPatcher, ProbedLocation
from glimpse.services.quotas import QuotaService
from glimpse.stores.registry import StoreRegistry

log = logging.getLogger(__name__)

# How long a DELETE waits for another one (or a scrubber) holding the same image.
_CLAIM_WAIT_SECONDS = 30
# Rounds of "remove the data, then the record" before giving up on an image that keeps
# gaining locations.
_DELETE_ROUNDS = 5


# Refuses property values (InvalidInput); see MetadefService.check_image_properties.
PropertyCheck = Callable[[RequestContext, Mapping[str, str]], Awaitable[None]]


@dataclass(frozen=True)
class ImageRules:
    """The limits and lists that image writes are checked against."""

    disk_formats: tuple[str, ...]
    container_formats: tuple[str, ...]
    image_property_quota: int
    image_tag_quota: int


@dataclass(frozen=True)
class Patch:
    """One JSON-patch operation, already parsed: op, path parts and value."""

    op: str
    path: tuple[str, ...]
    value: object = None
    draft: int = 10


class ImageService:
    def __init__(
        self,
        images: ImageRepository,
        members: MemberRepository,
        stores: StoreRegistry,
        policy: PolicyEnforcer,
        rules: ImageRules,
        property_check: PropertyCheck | None = None,
        cache: ImageCache | None = None,
        *,
        delayed_delete: bool = False,
        node_id: str = "glimpse",
        quotas: QuotaService | None = None,
        locations: LocationPatcher | None = None,
    ) -> None:
        # This node's image cache: a deleted or deactivated image's copy is dropped.
        self.cache = cache
        self.images = images
        self.members = members
        self.stores = stores
        self.policy = policy
        self.rules = rules
        # Optional: the metadefs catalogue's check of property values (off by default).
        self.property_check = property_check
        # DELETE hides images with data as pending_delete; the scrubber removes the data.
        self.delayed_delete = delayed_delete
        self.remover = DataRemover(images, stores, node_id)
        # Project limits (image_count_total); None: no project limits.
        self.quotas = quotas
        # Location changes through PATCH (show_multiple_locations); None: refused.
        self.locations = locations

    # -- reading ----------------------------------------------------------------

    async def target(self, ctx: RequestContext, image: Image) -> dict[str, object]:
        """The policy target of an image: Glance's project_id/owner/visibility/member_id."""
        member_id = None
        if (
            image.visibility == "shared"
            and ctx.project_id is not None
            and ctx.project_id != image.owner
            and await self.members.get(image.id, ctx.project_id) is not None
        ):
            member_id = ctx.project_id
        return {
            "project_id": image.owner,
            "owner": image.owner,
            "visibility": image.visibility,
            "member_id": member_id,
        }

    async def get_image(self, ctx: RequestContext, image_id: str) -> Image:
        image = await self.images.get(image_id)
        if image is None:
            raise ImageNotFound(image_id)
        target = await self.target(ctx, image)
        # Images the caller may not see are "not found", never "forbidden".
        if not _visible(ctx, image, target) or not self.policy.check(ctx, "get_image", target):
            raise ImageNotFound(image_id)
        return image

    async def list_images(self, ctx: RequestContext, query: ImageQuery) -> list[Image]:
        self.policy.authorize(ctx, "get_images", {"project_id": ctx.project_id})
        return await self.images.find(query)

    # -- creating ---------------------------------------------------------------

    async def create_image(
        self, ctx: RequestContext, core: Mapping[str, object], properties: Mapping[str, str],
        tags: list[str],
    ) -> Image:
        owner = core.get("owner") or ctx.project_id
        if owner is None:
            raise Forbidden("Images must have an owner; the request carries no project.")
        visibility = str(core.get("visibility") or "shared")
        target = {"project_id": ctx.project_id, "owner": owner, "visibility": visibility}
        self.policy.authorize(ctx, "add_image", target)
        if owner != ctx.project_id and not ctx.is_admin:
            raise Forbidden("You are not permitted to create images owned by another project.")
        self._authorize_visibility(ctx, visibility, target)
        self._check_properties(properties, len(properties))
        if self.property_check is not None:
            await self.property_check(ctx, properties)
        tags = list(dict.fromkeys(tags))
        self._check_tags(tags)
        image = Image(
            id=str(core.get("id") or uuid.uuid4()),
            owner=str(owner),
            name=_opt_str(core.get("name")),
            visibility=visibility,
            protected=bool(core.get("protected", False)),
            os_hidden=bool(core.get("os_hidden", False)),
            disk_format=_opt_str(core.get("disk_format")),
            container_format=_opt_str(core.get("container_format")),
            min_disk=_non_negative("min_disk", core.get("min_disk", 0)),
            min_ram=_non_negative("min_ram", core.get("min_ram", 0)),
            properties=dict(properties),
            tags=tags,
        )
        self._check_formats(image.disk_format, image.container_format)
        claim = await self.quotas.for_create(image.owner) if self.quotas else None
        return await self.images.create(image, claim=claim)

    # -- updating ---------------------------------------------------------------

    async def update_image(
        self, ctx: RequestContext, image_id: str, patches: list[Patch]
    ) -> Image:
        image = await self.get_image(ctx, image_id)
        target = await self.target(ctx, image)
        # As Glance: location changes answer to set/delete_image_location only.
        properties_too = not patches or any(p.path[0] != "locations" for p in patches)
        if properties_too:
            self.policy.authorize(ctx, "modify_image", target)
        located = _location_patches(patches)
        probed: dict[str, ProbedLocation] = {}
        if located:
            # Allowed first, then the URLs checked (network I/O, outside the transaction).
            self._location_patcher().check_allowed(
                located, lambda rule: self.policy.authorize(ctx, rule, target)
            )
            probed = await self._location_patcher().probe(image, located)
        # A first pass on what we read refuses bad patches before taking any lock.
        preview, _ = self._apply_patches(ctx, image, patches, target, probed)
        if preview is None:
            return image
        if self.property_check is not None and preview.set_properties:
            await self.property_check(ctx, preview.set_properties)
        removed: list[Location] = []

        def mutate(current: Image) -> ImageChanges | None:
            # Applied again to the image as it is inside the write transaction:
            # concurrent PATCHes queue and each builds on the last, none is lost
            # (Glance's read-modify-write of the whole row loses updates).
            current_target = {**target, "project_id": current.owner, "owner": current.owner,
                              "visibility": current.visibility}
            if properties_too:
                self.policy.authorize(ctx, "modify_image", current_target)
            changes, removed[:] = self._apply_patches(
                ctx, current, patches, current_target, probed
            )
            return changes

        updated = await self.images.modify(image_id, mutate)
        if updated is None:
            raise ImageNotFound(image_id)
        await self._delete_removed_data(image_id, removed)
        return updated

    def _location_patcher(self) -> LocationPatcher:
        if self.locations is None:
            raise Forbidden(
                "Locations cannot be changed through PATCH unless "
                "show_multiple_locations is enabled."
            )
        return self.locations

    async def _delete_removed_data(self, image_id: str, removed: list[Location]) -> None:
        """The data of locations a PATCH removed (as Glance): the record no longer
        points at it, so a failure leaves an orphan, which is logged."""
        for location in removed:
            store = self.stores.for_location(location.store, location.url)
            if store is None:
                continue
            try:
                await store.delete(location.url)
            except Exception:
                log.exception("data of image %s at %s left behind as an orphan", image_id,
                              location.url)

    def _apply_patches(
        self, ctx: RequestContext, image: Image, patches: list[Patch],
        target: dict[str, object], probed: dict[str, ProbedLocation],
    ) -> tuple[ImageChanges | None, list[Location]]:
        """The changes the patches make to this image, and the locations they remove."""
        core: dict[str, object] = {}
        props = dict(image.properties)
        tags: list[str] | None = None
        for patch in patches:
            name = patch.path[0]
            if name == "locations":
                continue
            if name in _PATCHABLE_CORE:
                if patch.op == "remove":
                    raise Forbidden(f"Property {name} may not be removed.")
                if patch.draft == 4 and patch.op == "add":
                    raise Conflict(f"Property {name} already present.")
                value = patch.value
                if name == "tags":
                    tags = list(dict.fromkeys(value))  # type: ignore[call-overload]
                    continue
                core[name] = value
                continue
            # An additional property.
            if patch.op == "remove":
                if name not in props:
                    raise Conflict(f"Property {name} does not exist.")
                del props[name]
            elif patch.op == "replace":
                if name not in props:
                    raise Conflict(f"Property {name} does not exist.")
                props[name] = str(patch.value)
            else:
                if patch.draft == 4 and name in props:
                    raise Conflict(f"Property {name} already present.")
                props[name] = str(patch.value)
        self._check_core_changes(ctx, image, core, target)
        if tags is not None:
            self._check_tags(tags)
        new_props = {k: v for k, v in props.items() if image.properties.get(k) != v}
        removed = tuple(k for k in image.properties if k not in props)
        if new_props:
            self._check_properties(props, len(props))
        located = _location_patches(patches)
        gone: list[Location] = []
        drop: tuple[str, ...] = ()
        add: tuple[Location, ...] = ()
        if located:
            edit = self._location_patcher().apply(
                image, located, probed, lambda rule: self.policy.authorize(ctx, rule, target)
            )
            core.update(edit.core)
            gone = edit.removed
            drop, add = _location_diff(image.locations, edit.locations)
        if not core and not new_props and not removed and tags is None and not drop and not add:
            return None, []
        changes = ImageChanges(
            core=core, set_properties=new_props, remove_properties=removed, tags=tags,
            remove_locations=drop, add_locations=add,
        )
        return changes, gone

    def _check_core_changes(
        self, ctx: RequestContext, image: Image, core: dict[str, object],
        target: dict[str, object],
    ) -> None:
        if "owner" in core and core["owner"] != image.owner and not ctx.is_admin:
            raise Forbidden("Owner can't be updated by non admin.")
        if "visibility" in core and core["visibility"] != image.visibility:
            self._authorize_visibility(ctx, str(core["visibility"]), target)
        for name in ("disk_format", "container_format"):
            if name in core and core[name] != getattr(image, name) and image.status != "queued":
                raise Forbidden(f"Attribute {name} can be only replaced for a queued image.")
        for name in ("min_disk", "min_ram"):
            if name in core:
                core[name] = _non_negative(name, core[name])
        self._check_formats(
            _opt_str(core.get("disk_format", image.disk_format)),
            _opt_str(core.get("container_format", image.container_format)),
        )

    def _authorize_visibility(
        self, ctx: RequestContext, visibility: str, target: Mapping[str, object]
    ) -> None:
        if visibility == "public":
            self.policy.authorize(ctx, "publicize_image", target)
        elif visibility == "community":
            self.policy.authorize(ctx, "communitize_image", target)

    def _check_formats(self, disk_format: str | None, container_format: str | None) -> None:
        if disk_format is not None and disk_format not in self.rules.disk_formats:
            raise InvalidInput(
                f"Invalid disk format '{disk_format}' for image; allowed: "
                + ", ".join(self.rules.disk_formats)
            )
        if container_format is not None and container_format not in self.rules.container_formats:
            raise InvalidInput(
                f"Invalid container format '{container_format}' for image; allowed: "
                + ", ".join(self.rules.container_formats)
            )
        # AMI-style images need all three of their formats to agree, as Glance requires.
        ami = {"ami", "ari", "aki"}
        if (
            disk_format in ami or container_format in ami
        ) and disk_format is not None and container_format is not None:
            if disk_format != container_format:
                raise InvalidInput(
                    "Invalid mix of disk and container formats. When setting a disk or "
                    "container format to one of 'aki', 'ari', or 'ami', the container "
                    "and disk formats must match."
                )

    def _check_properties(self, properties: Mapping[str, str], count: int) -> None:
        quota = self.rules.image_property_quota
        counted = sum(1 for k in properties if not k.startswith(RESERVED_PREFIX))
        if quota >= 0 and counted > quota:
            raise LimitExceeded(
                f"Maximum number of image properties exceeded: {counted} > {quota}"
            )

    def _check_tags(self, tags: list[str]) -> None:
        quota = self.rules.image_tag_quota
        if quota >= 0 and len(tags) > quota:
            raise LimitExceeded(f"Maximum number of tags exceeded: {len(tags)} > {quota}")

    # -- tags -------------------------------------------------------------------

    async def add_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        image = await self.get_image(ctx, image_id)
        self.policy.authorize(ctx, "modify_image", await self.target(ctx, image))
        if len(tag) > 255:
            raise InvalidInput("Tag is too long: at most 255 characters.")
        if not await self.images.add_tag(image_id, tag, self.rules.image_tag_quota):
            raise LimitExceeded(
                f"Maximum number of tags exceeded: {self.rules.image_tag_quota}"
            )

    async def remove_tag(self, ctx: RequestContext, image_id: str, tag: str) -> None:
        image = await self.get_image(ctx, image_id)
        self.policy.authorize(ctx, "modify_image", await self.target(ctx, image))
        if not await self.images.remove_tag(image_id, tag):
            raise TagNotFound(tag)

    # -- lifecycle --------------------------------------------------------------

    async def delete_image(self, ctx: RequestContext, image_id: str) -> None:
        """Glance's order: the data goes first, the record last, so a store that refuses
        (RBD data with clones: 409) or cannot be reached (503) leaves the image as it
        was, still active with every location whose data is still there. With
        ``delayed_delete`` an image with data is only hidden as pending_delete; the
        scrubber removes its data later."""
        image = await self.get_image(ctx, image_id)
        self.policy.authorize(ctx, "delete_image", await self.target(ctx, image))
        _check_deletable(image)
        async with self._deletion_claim(image_id) as claim:
            _check_deletable(claim.image)  # as it is now: a PATCH may have protected it
            if self.delayed_delete and claim.image.locations:
                if not await self.images.mark_pending_delete(image_id, claim.claimant):
                    raise ImageNotFound(image_id)
            else:
                await self._remove_data_then_record(claim)
        if self.cache is not None:
            await self.cache.forget(image_id)

    @asynccontextmanager
    async def _deletion_claim(self, image_id: str) -> AsyncIterator[Claim]:
        """The image, claimed for deletion; waits while another request or a scrubber
        holds it, then 404 if that one deleted it (two racing DELETEs: one 204, one
        404), or 409 if it still holds it after a while."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLAIM_WAIT_SECONDS
        while True:
            async with self.remover.holding(
                lambda claimant: self.images.claim(image_id, claimant, CLAIM_SECONDS),
                "delete",
            ) as claim:
                if claim is not None:
                    yield claim
                    return
            if await self.images.get(image_id) is None:
                raise ImageNotFound(image_id)
            if loop.time() > deadline:
                raise Conflict(
                    f"Image {image_id} is being deleted by another request; try again later."
                )
            await asyncio.sleep(0.1)

    async def _remove_data_then_record(self, claim: Claim) -> None:
        image = claim.image
        for _ in range(_DELETE_ROUNDS):
            for location in image.locations:
                await self._remove_location(image.id, location)
            current = await self.images.get(image.id)
            if current is None:
                raise ImageNotFound(image.id)
            # Guarded on the version: a location added meanwhile (a copy-image that was
            # finishing) is removed in the next round instead of being left behind.
            if not current.locations and await self.images.mark_deleted(
                image.id, claim.claimant, expected_version=current.version
            ):
                return
            image = current
        raise Conflict(f"Image {image.id} kept changing while being deleted; try again.")

    async def _remove_location(self, image_id: str, location: Location) -> None:
        try:
            await self.remover.remove(image_id, location, unknown_store_ok=True)
        except Conflict as exc:
            log.warning("image %s not deleted: its data at %s is in use: %s", image_id,
                        location.url, exc.message)
            raise Conflict(
                f"Image {image_id} could not be deleted because it is in use: {exc.message}"
            ) from exc
        except StoreUnavailable as exc:
            log.warning("image %s not deleted: %s", image_id, exc.message)
            raise StoreUnavailable(
                f"Image {image_id} could not be deleted: {exc.message}. The image keeps "
                "the data that could not be removed; try again later."
            ) from exc

    async def deactivate(self, ctx: RequestContext, image_id: str) -> None:
        image = await self.get_image(ctx, image_id)
        self.policy.authorize(ctx, "deactivate", await self.target(ctx, image))
        if image.status == "deactivated":
            return
        if image.status != "active":
            raise Forbidden(f"Not allowed to deactivate image in status '{image.status}'")
        check_transition(image.status, "deactivated")
        if await self.images.update(
            image_id, ImageChanges(core={"status": "deactivated"}), expected_status=["active"]
        ) is None:
            raise Conflict(f"Image {image_id} changed status while deactivating; try again.")
        if self.cache is not None:
            await self.cache.forget(image_id)

    async def reactivate(self, ctx: RequestContext, image_id: str) -> None:
        image = await self.get_image(ctx, image_id)
        self.policy.authorize(ctx, "reactivate", await self.target(ctx, image))
        if image.status == "active":
            return
        if image.status != "deactivated":
            raise Forbidden(f"Not allowed to reactivate image in status '{image.status}'")
        if await self.images.update(
            image_id, ImageChanges(core={"status": "active"}), expected_status=["deactivated"]
        ) is None:
            raise Conflict(f"Image {image_id} changed status while reactivating; try again.")


class TagNotFound(NotFound):
    def __init__(self, tag: str) -> None:
        super().__init__(f"Tag {tag} not found")


_PATCHABLE_CORE = frozenset(
    {
        "name", "visibility", "protected", "os_hidden", "owner", "min_disk", "min_ram",
        "disk_format", "container_format", "tags",
    }
)


def _location_patches(patches: list[Patch]) -> list[LocationPatch]:
    return [
        LocationPatch(op=p.op, position=p.path[1] if len(p.path) > 1 else None, value=p.value)
        for p in patches if p.path[0] == "locations"
    ]


def _location_diff(
    old: list[Location], new: list[Location]
) -> tuple[tuple[str, ...], tuple[Location, ...]]:
    """Rows to drop (by url) and to append so that the stored order becomes ``new``:
    everything after the longest common prefix is rewritten."""
    same = 0
    while same < min(len(old), len(new)) and old[same] == new[same]:
        same += 1
    return tuple(loc.url for loc in old[same:]), tuple(new[same:])


def _check_deletable(image: Image) -> None:
    if image.protected:
        raise ProtectedImage(f"Image {image.id} is protected and cannot be deleted.")


def _visible(ctx: RequestContext, image: Image, target: Mapping[str, object]) -> bool:
    """Glance's is_image_visible: admin, public, community, the owner, or a member of a
    shared image (any member status). Glance's get_image policy lets every 'shared'
    image through and leaves membership to this check."""
    if ctx.is_admin or image.visibility in ("public", "community"):
        return True
    if ctx.project_id is not None and ctx.project_id == image.owner:
        return True
    return image.visibility == "shared" and target.get("member_id") is not None


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _non_negative(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{name} must be an integer")
    if value < 0:
        raise InvalidInput(f"Cannot set {name} to a negative value")
    if value > 2**31 - 1:
        raise InvalidInput(f"{name} is too large")
    return value
