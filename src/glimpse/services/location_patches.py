"""Location changes through image PATCH: Glance's ``show_multiple_locations`` behaviour.

With ``show_multiple_locations = true`` a PATCH may ``add`` a location at a position
(``/locations/N`` or ``/locations/-``), ``replace`` the whole list (``/locations``: the
same URLs, other metadata or order; a queued image may get its first ones) and
``remove`` one (``/locations/N``). Glance's rules:

- ``set_image_location`` guards add and replace, ``delete_image_location`` (admin by
  default) guards remove; without the option every such change is 403.
- A new location must be in one of this site's stores, never ``file://`` (nor
  ``filesystem://``, ``swift+config://``); an http(s) one must pass
  ``[import_filtering_opts]``; its data must exist (a HEAD, or one byte read) (400).
- A queued image becomes active with its first location, taking its size from the store
  and checksum/os_hash_algo/os_hash_value from ``validation_data``. Later locations'
  validation_data must match what the image has (409); nothing is hashed here.
- Only an active image may lose a location, never its last one (403); the data of a
  removed location is deleted from its store once the record no longer points at it.

Nothing here does I/O except :meth:`LocationPatcher.probe`, which runs before the
write transaction; :meth:`LocationPatcher.apply` then decides inside it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from glimpse.domain.errors import Conflict, Forbidden, InvalidInput, LimitExceeded
from glimpse.domain.image import Image, Location
from glimpse.image_import.uri_filter import UriFilter, check_uri
from glimpse.stores.registry import StoreRegistry

log = logging.getLogger(__name__)

# Never through the API: they would expose the node's own files or credentials.
_RESTRICTED_SCHEMES = ("file", "filesystem", "swift+config")
_HASH_FIELDS = ("checksum", "os_hash_algo", "os_hash_value")


@dataclass(frozen=True)
class LocationRules:
    show_multiple_locations: bool
    hashing_algorithm: str
    location_quota: int
    uri_filter: UriFilter


@dataclass(frozen=True)
class ProbedLocation:
    """A URL checked before the transaction: its store, and its size when known."""

    url: str
    store: str
    size: int | None


@dataclass(frozen=True)
class LocationPatch:
    op: str  # add, replace, remove
    position: str | None  # add/remove: "-" or digits
    value: object = None


@dataclass
class LocationEdit:
    """The image's locations after the patches, and what else changes with them."""

    locations: list[Location]
    core: dict[str, object] = field(default_factory=dict)
    removed: list[Location] = field(default_factory=list)  # their data is to be deleted


class LocationPatcher:
    def __init__(self, stores: StoreRegistry, rules: LocationRules) -> None:
        self.stores = stores
        self.rules = rules

    def check_allowed(
        self, patches: Sequence[LocationPatch], authorize: Callable[[str], None]
    ) -> None:
        """Policy and show_multiple_locations, before anything is looked at (403)."""
        for patch in patches:
            if patch.op == "replace" and not patch.value:
                raise Forbidden("Cannot set locations to empty list.")
            authorize("delete_image_location" if patch.op == "remove" else "set_image_location")
            if not self.rules.show_multiple_locations:
                verb = {"add": "add", "replace": "update", "remove": "remove"}[patch.op]
                raise Forbidden(
                    f"It's not allowed to {verb} locations if locations are invisible."
                )

    async def probe(
        self, image: Image, patches: Sequence[LocationPatch]
    ) -> dict[str, ProbedLocation]:
        """Check every URL the patches would add that the image does not have yet."""
        present = {loc.url for loc in image.locations}
        urls: list[str] = []
        for patch in patches:
            values = patch.value if patch.op == "replace" else [patch.value]
            if patch.op != "remove" and isinstance(values, list):
                urls += [str(v["url"]) for v in values if isinstance(v, dict) and "url" in v]
        probed: dict[str, ProbedLocation] = {}
        for url in dict.fromkeys(urls):
            if url not in present:
                probed[url] = await self._probe(url)
        return probed

    async def _probe(self, url: str) -> ProbedLocation:
        invalid = InvalidInput(f"Invalid location: {url}")
        scheme = urlsplit(url).scheme
        store = self.stores.for_location(None, url)
        if store is None or scheme in _RESTRICTED_SCHEMES:
            raise invalid
        if scheme in ("http", "https"):
            check_uri(url, self.rules.uri_filter)
        try:
            size = await store.size(url)
            if size is None:
                # No cheap size: the first byte proves the data is there.
                async for chunk in store.read(url, 0, 1):
                    if chunk:
                        break
                else:
                    raise invalid
            elif size <= 0:
                raise invalid
        except InvalidInput:
            raise
        except Exception as exc:
            log.info("location %s refused: %s", url, exc)
            raise invalid from exc
        return ProbedLocation(url=url, store=store.id, size=size)

    def apply(
        self,
        image: Image,
        patches: Sequence[LocationPatch],
        probed: dict[str, ProbedLocation],
        authorize: Callable[[str], None],
    ) -> LocationEdit:
        """The patches, in order, on the image as it is now (inside the transaction)."""
        self.check_allowed(patches, authorize)
        edit = LocationEdit(locations=list(image.locations))
        current = image
        for patch in patches:
            status = str(edit.core.get("status", current.status))
            if patch.op == "remove":
                self._remove(edit, status, patch.position)
            elif patch.op == "add":
                self._add(edit, current, status, patch, probed)
            else:
                self._replace(edit, current, status, patch, probed)
        return edit

    def _remove(self, edit: LocationEdit, status: str, position: str | None) -> None:
        if status != "active":
            raise Conflict(f"It's not allowed to remove locations if image status is {status}.")
        if len(edit.locations) == 1:
            raise Forbidden("Cannot remove last location in the image.")
        pos = _position(position, len(edit.locations), allow_end=False)
        if pos is None:
            raise InvalidInput("Invalid position for removing a location.")
        edit.removed.append(edit.locations.pop(pos))

    def _add(
        self, edit: LocationEdit, image: Image, status: str, patch: LocationPatch,
        probed: dict[str, ProbedLocation],
    ) -> None:
        if status not in ("active", "queued"):
            raise Conflict(f"It's not allowed to add locations if image status is {status}.")
        value = _location_value(patch.value)
        hashes = self._validation(image, edit, status, [value])
        pos = _position(patch.position, len(edit.locations), allow_end=True)
        if pos is None:
            raise InvalidInput("Invalid position for adding a location.")
        if any(loc.url == value.url for loc in edit.locations):
            raise InvalidInput(f"The location {value.url} is already on the image.")
        if 0 <= self.rules.location_quota <= len(edit.locations):
            raise LimitExceeded(
                f"Maximum number of locations exceeded: {self.rules.location_quota}"
            )
        location = self._location(value, probed)
        edit.locations.insert(pos, location)
        self._activate(edit, image, status, hashes, [location], probed)

    def _replace(
        self, edit: LocationEdit, image: Image, status: str, patch: LocationPatch,
        probed: dict[str, ProbedLocation],
    ) -> None:
        if status not in ("active", "queued"):
            raise Conflict(
                f"It's not allowed to replace locations if image status is {status}."
            )
        if not isinstance(patch.value, list):
            raise InvalidInput("Invalid locations: a list of locations is expected.")
        values = [_location_value(v) for v in patch.value]
        hashes = self._validation(image, edit, status, values)
        new_urls = sorted(v.url for v in values)
        old_urls = sorted(loc.url for loc in edit.locations)
        if edit.locations and new_urls != old_urls:
            raise InvalidInput(
                "Original locations is not empty: only the metadata or order of the "
                "image's locations may be replaced."
            )
        if len(set(new_urls)) != len(new_urls):
            raise InvalidInput("The same location is given twice.")
        if 0 <= self.rules.location_quota < len(values):
            raise LimitExceeded(
                f"Maximum number of locations exceeded: {self.rules.location_quota}"
            )
        known = {loc.url: loc for loc in edit.locations}
        locations = [
            Location(url=v.url, store=known[v.url].store,
                     metadata={**v.metadata, "store": known[v.url].store})
            if v.url in known else self._location(v, probed)
            for v in values
        ]
        added = [loc for loc in locations if loc.url not in known]
        edit.locations = locations
        self._activate(edit, image, status, hashes, added, probed)

    def _location(self, value: _Value, probed: dict[str, ProbedLocation]) -> Location:
        checked = probed.get(value.url)
        if checked is None:
            # Added to the image by someone else meanwhile (it was there when probed).
            raise Conflict("The image's locations changed during the request; try again.")
        return Location(url=value.url, store=checked.store,
                        metadata={**value.metadata, "store": checked.store})

    def _activate(
        self, edit: LocationEdit, image: Image, status: str, hashes: dict[str, str],
        added: list[Location], probed: dict[str, ProbedLocation],
    ) -> None:
        if image.size is None and "size" not in edit.core:
            size = next((probed[loc.url].size for loc in added if probed[loc.url].size), None)
            if size is not None:
                edit.core["size"] = size
        if status == "queued" and edit.locations:
            edit.core.update(hashes)
            edit.core["status"] = "active"

    def _validation(
        self, image: Image, edit: LocationEdit, status: str, values: list[_Value]
    ) -> dict[str, str]:
        """Glance's rules for validation_data: new values only for a queued image, and
        never different from values the image already has."""
        given: dict[str, str] = {}
        for value in values:
            for key, item in value.validation.items():
                if given.get(key, item) != item:
                    raise Conflict(f"Conflicting values for {key}")
                given[key] = item
        new: dict[str, str] = {}
        for key, item in given.items():
            current = edit.core.get(key, getattr(image, key))
            if item == current:
                continue
            if current:
                raise Conflict(f"{key} is already set with a different value")
            new[key] = item
        if not new:
            return {}
        if status != "queued":
            raise Conflict(
                f"New value(s) for {', '.join(new)} may only be provided when image status "
                "is 'queued'"
            )
        if "checksum" in new:
            _hex(new["checksum"], 16, "checksum", "md5")
        algo = new.get("os_hash_algo")
        if algo != self.rules.hashing_algorithm:
            raise Conflict(f"os_hash_algo must be {self.rules.hashing_algorithm}, not {algo}")
        _hex(new.get("os_hash_value", ""), _digest_size(algo), "os_hash_value", algo)
        return new


@dataclass(frozen=True)
class _Value:
    """One location as a PATCH gives it."""

    url: str
    metadata: dict[str, object]
    validation: dict[str, str]


def _location_value(value: object) -> _Value:
    if not isinstance(value, dict) or not isinstance(value.get("url"), str) or not isinstance(
        value.get("metadata"), dict
    ):
        raise InvalidInput("A location needs a 'url' string and a 'metadata' object.")
    data = value.get("validation_data")
    validation = (
        {k: str(v) for k, v in data.items() if k in _HASH_FIELDS} if isinstance(data, dict)
        else {}
    )
    return _Value(url=value["url"], metadata=dict(value["metadata"]), validation=validation)


def _position(text: str | None, count: int, *, allow_end: bool) -> int | None:
    """Glance's positions: '-' is the end (add) or the last one (remove); digits index."""
    if text is None:
        return None
    if text == "-":
        return count if allow_end else count - 1
    if not text.isdigit():
        return None
    pos = int(text)
    if not allow_end and not 0 <= pos < count:
        return None
    return pos


def _digest_size(algo: str) -> int:
    return hashlib.new(algo).digest_size


def _hex(value: str, size: int, name: str, algo: str) -> None:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise Conflict(f"{name} ({value}) is not a valid hexadecimal value") from None
    if len(raw) != size:
        raise Conflict(
            f"{name} ({value}) is not the correct size for {algo} (should be {size} bytes)"
        )
