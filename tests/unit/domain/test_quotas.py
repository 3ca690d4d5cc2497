"""How a refused request reads: oslo.limit's words (Glance's answers), exact bytes."""

from __future__ import annotations

from glimpse.domain.errors import LimitExceeded, QuotaExceeded

MIB = 1024 * 1024


def test_counts_read_as_oslo_limit_words_them() -> None:
    error = QuotaExceeded("image_count_total", 2, 2, 1)
    assert isinstance(error, LimitExceeded)  # 413
    assert error.message == (
        "Resource image_count_total is over limit of 2 due to current usage 2 and delta 1"
    )


def test_sizes_in_mib_with_the_bytes_after_them() -> None:
    error = QuotaExceeded("image_size_total", 5 * MIB, 3 * MIB, 3 * MIB)
    assert error.message.startswith(
        "Resource image_size_total is over limit of 5 due to current usage 3 and delta 3 "
    )
    # One byte over is a whole MiB more, never "delta 0".
    error = QuotaExceeded("image_stage_total", MIB, MIB, 1)
    assert "current usage 1 and delta 1 (MiB; in bytes: limit 1048576, usage 1048576, " \
        "delta 1)" in error.message


def test_legacy_quota_keeps_its_message() -> None:
    error = QuotaExceeded("user_storage_quota", 1024, 600, 500)
    assert error.message == (
        "Denying attempt to upload image because it exceeds the quota: the project may "
        "store 1024 bytes and has 424 bytes left."
    )
