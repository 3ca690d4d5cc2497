"""Disk image formats: detection, virtual size and safety, as data streams.

The interface is in ``glimpse.formats.stream``.
"""
