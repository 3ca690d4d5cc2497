"""Project quotas: the resources counted against a project's limits, and how an overage
reads.

The four unified-limits resources are Glance's, with Glance's units in Keystone: sizes
in MiB, counts in images. Inside Glimpse every size is in bytes (limits are converted
once, when read), so a stream is stopped at the exact byte that would pass a limit.
``user_storage_quota`` is the legacy ``[DEFAULT]`` option, in bytes.
"""

from __future__ import annotations

IMAGE_SIZE_TOTAL = "image_size_total"  # data in stores: size x locations of each image
IMAGE_STAGE_TOTAL = "image_stage_total"  # data in the staging area
IMAGE_COUNT_TOTAL = "image_count_total"  # images (not deleted, killed or pending_delete)
IMAGE_COUNT_UPLOADING = "image_count_uploading"  # uploads, stages and imports under way
USER_STORAGE_QUOTA = "user_storage_quota"  # legacy: counted as image_size_total, in bytes

UNIFIED_RESOURCES = (
    IMAGE_SIZE_TOTAL, IMAGE_STAGE_TOTAL, IMAGE_COUNT_TOTAL, IMAGE_COUNT_UPLOADING,
)
BYTE_RESOURCES = frozenset({IMAGE_SIZE_TOTAL, IMAGE_STAGE_TOTAL, USER_STORAGE_QUOTA})
MIB = 1024 * 1024


def describe_overage(resource: str, limit: int, usage: int, delta: int) -> str:
    """The message of a refused request. Unified limits read as oslo.limit words them
    (Glance's answers), sizes in MiB with the exact bytes after them."""
    if resource == USER_STORAGE_QUOTA:
        left = max(0, limit - usage)
        return (
            "Denying attempt to upload image because it exceeds the quota: the project "
            f"may store {limit} bytes and has {left} bytes left."
        )
    if resource in BYTE_RESOURCES:
        asked = -(-delta // MIB)  # rounded up: 1 byte more than the limit is 1 MiB more
        return (
            f"Resource {resource} is over limit of {limit // MIB} due to current usage "
            f"{usage // MIB} and delta {asked} (MiB; in bytes: limit {limit}, usage "
            f"{usage}, delta {delta})"
        )
    return (
        f"Resource {resource} is over limit of {limit} due to current usage {usage} "
        f"and delta {delta}"
    )
