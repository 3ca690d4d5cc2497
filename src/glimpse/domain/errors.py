"""Every condition a caller can run into, named for what went wrong.

The API maps each class (by its place in this tree) to one HTTP status in
``glimpse.api.errors``; nothing below the API knows about HTTP.
"""

from glimpse.domain.quotas import describe_overage


class GlimpseError(Exception):
    """Base of all errors that carry a message meant for the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# 400
class InvalidInput(GlimpseError):
    """The request is malformed or asks for something the API does not allow."""


class InvalidImageData(InvalidInput):
    """The uploaded bytes are not acceptable (size mismatch, unsafe content...)."""


class UnsafeImage(InvalidImageData):
    """Inspection refused the data; ``reason`` is a short stable name for why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FormatMismatch(UnsafeImage):
    """The data is not in the declared ``disk_format``."""


# 401 / 403
class Unauthenticated(GlimpseError):
    """No or invalid credentials; ``challenge`` is the WWW-Authenticate value to send."""

    def __init__(self, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.challenge = challenge


class Forbidden(GlimpseError):
    """The caller is known but may not do this."""


class ProtectedImage(Forbidden):
    """A protected image cannot be deleted."""


# 404
class NotFound(GlimpseError):
    """The thing does not exist or the caller may not know it does."""


class ImageNotFound(NotFound):
    def __init__(self, image_id: str) -> None:
        super().__init__(f"No image found with ID {image_id}")
        self.image_id = image_id


class MemberNotFound(NotFound):
    pass


class StoreNotFound(NotFound):
    pass


# 409
class Conflict(GlimpseError):
    """The request clashes with the current state of the resource."""


class InvalidStatusTransition(Conflict):
    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"Image status transition from {current} to {target} is not allowed")
        self.current = current
        self.target = target


class Duplicate(Conflict):
    pass


# 410
class ImageGone(GlimpseError):
    """The image was deleted while its data was being written."""


# 413
class LimitExceeded(GlimpseError):
    """A quota or size cap was reached."""


class RequestTooLarge(LimitExceeded):
    pass


class QuotaExceeded(LimitExceeded):
    """A project limit would be passed: ``usage`` (before this request) plus ``delta``
    (what it asks for) is more than ``limit``; all in bytes or in images."""

    def __init__(self, resource: str, limit: int, usage: int, delta: int) -> None:
        super().__init__(describe_overage(resource, limit, usage, delta))
        self.resource = resource
        self.limit = limit
        self.usage = usage
        self.delta = delta


# 415
class UnsupportedMediaType(GlimpseError):
    pass


# 416
class RangeNotSatisfiable(GlimpseError):
    """``size`` is the image size when known (it goes into ``Content-Range: bytes */size``)."""

    def __init__(self, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size


# 503
class StoreUnavailable(GlimpseError):
    """A store cannot take or serve data right now."""


class IdentityUnavailable(GlimpseError):
    """The identity service (Keystone) cannot validate tokens right now."""


class StoreFull(LimitExceeded):
    """The store ran out of space."""
