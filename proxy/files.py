"""Noticing that files changed: the config file, secrets, certificates.

Kubernetes updates a mounted ConfigMap or Secret by swapping a `..data` symlink, so the
mark of a file is taken through the symlinks (device, inode, mtime, size) plus the path it
resolves to; an edit in place, a replacement and a re-pointed link all change it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

Fingerprint = tuple[tuple[str, object], ...]


def fingerprint(paths: Sequence[Path]) -> Fingerprint:
    """What changes when any of `paths` is edited, replaced, or re-pointed by a symlink."""
    marks: list[tuple[str, object]] = []
    for path in paths:
        try:
            st = os.stat(path)  # follows symlinks: a ..data swap shows up as a new inode
            target = os.path.realpath(path)
            mark: object = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, target)
        except OSError as exc:
            mark = type(exc).__name__
        marks.append((str(path), mark))
    return tuple(marks)
