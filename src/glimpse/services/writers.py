"""Which process of which node writes an image's data: the ``data_node`` of an image in
``saving`` or ``uploading``.

A node may run several worker processes, and uvicorn restarts one that dies while its
siblings go on serving. The writer therefore names the process too (``node#pid``), so
that a restarted worker resets the uploads of the process that died and leaves its
live siblings' uploads alone.
"""

from __future__ import annotations

import os


def writer_id(node_id: str) -> str:
    return f"{node_id}#{os.getpid()}"


def abandoned(data_node: str | None, node_id: str) -> bool:
    """Whether ``data_node`` names a process of this node that no longer runs."""
    if data_node is None:
        return False
    if data_node == node_id:  # written before writers carried their process id
        return True
    node, _, pid = data_node.rpartition("#")
    if node != node_id:
        return False
    if not pid.isdigit():
        return True
    return not _alive(int(pid))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, run by another user
        return True
    return True
