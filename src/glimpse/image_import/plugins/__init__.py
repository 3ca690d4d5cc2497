"""The plugins of ``[image_import_opts] image_import_plugins``, by Glance's names.

:func:`build_plugins` turns the configured names into plugin objects, in order, and
fails start-up with ``ValueError`` on a name it does not know or a configuration a
plugin cannot work with (rather than importing without it).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence

from glimpse.config import ImportSettings
from glimpse.formats.stream import FormatPolicy
from glimpse.image_import.plugins.base import ImportPlugin
from glimpse.image_import.plugins.image_conversion import ImageConversionPlugin
from glimpse.image_import.plugins.image_decompression import ImageDecompressionPlugin
from glimpse.image_import.plugins.inject_image_metadata import InjectImageMetadataPlugin
from glimpse.image_import.plugins.no_op import NoOpPlugin

__all__ = ["ImportPlugin", "build_plugins"]

_Factory = Callable[[ImportSettings, FormatPolicy, int], ImportPlugin]


def _image_conversion(
    settings: ImportSettings, policy: FormatPolicy, size_cap: int
) -> ImportPlugin:
    output = settings.conversion_output_format
    if output not in policy.disk_formats:
        raise ValueError(
            f"[image_conversion] output_format {output!r} is not among the enabled "
            "[image_format] disk_formats"
        )
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise ValueError(
            "the image_conversion import plugin needs qemu-img (Debian package qemu-utils; "
            "scripts/install-qemu installs it)"
        )
    return ImageConversionPlugin(
        output,
        policy,
        cpu_seconds=settings.qemu_img_cpu_seconds,
        memory_mib=settings.qemu_img_memory_mib,
        size_cap=size_cap,
        qemu_img=qemu_img,
    )


def _image_decompression(
    settings: ImportSettings, policy: FormatPolicy, size_cap: int
) -> ImportPlugin:
    return ImageDecompressionPlugin(size_cap)


def _inject_image_metadata(
    settings: ImportSettings, policy: FormatPolicy, size_cap: int
) -> ImportPlugin:
    return InjectImageMetadataPlugin(dict(settings.inject), settings.inject_ignore_user_roles)


def _no_op(settings: ImportSettings, policy: FormatPolicy, size_cap: int) -> ImportPlugin:
    return NoOpPlugin()


PLUGINS: dict[str, _Factory] = {
    "image_conversion": _image_conversion,
    "image_decompression": _image_decompression,
    "inject_image_metadata": _inject_image_metadata,
    "no_op": _no_op,
}


def build_plugins(
    names: Sequence[str], settings: ImportSettings, format_policy: FormatPolicy, size_cap: int
) -> list[ImportPlugin]:
    """The plugins ``names`` in order; ValueError on an unknown name or bad settings."""
    unknown = [name for name in names if name not in PLUGINS]
    if unknown:
        raise ValueError(
            "[image_import_opts] image_import_plugins names unknown plugins: "
            + ", ".join(repr(n) for n in unknown)
            + "; known plugins are: "
            + ", ".join(sorted(PLUGINS))
        )
    return [PLUGINS[name](settings, format_policy, size_cap) for name in names]
