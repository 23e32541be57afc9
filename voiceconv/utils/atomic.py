"""Atomic file writes: write to a temporary file in the same folder, then rename.

A reader (or a crash) therefore sees either the old file or the complete new one,
never a half-written file. ``os.replace`` is atomic on POSIX and Windows when the
source and destination are on the same file system, which a sibling temp file
guarantees. With ``overwrite=False`` the finished file is published under its
name only if that name is still free (:func:`publish_no_clobber`): a file that
appeared there while we were writing is kept.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DestinationExists(FileExistsError):
    """``overwrite=False`` and the destination exists: it was kept."""


@contextlib.contextmanager
def atomic_path(
    dest: str | os.PathLike[str], suffix: str | None = None, *, overwrite: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it onto ``dest``.

    The temporary name keeps ``dest``'s suffix (or ``suffix``) so that writers which
    pick a format from the extension (soundfile, numpy) behave the same. On any
    exception the temporary file is removed and ``dest`` is left untouched. With
    ``overwrite=False`` an existing ``dest`` (even one created while the body ran) is
    kept and :class:`DestinationExists` is raised.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ext = suffix if suffix is not None else dest.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{ext}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file 0600; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        if overwrite:
            os.replace(tmp_path, dest)
        else:
            publish_no_clobber(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def publish_no_clobber(tmp: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Give the finished file ``tmp`` the name ``dest`` unless ``dest`` exists.

    ``os.link`` creates ``dest`` only if it is absent (else :class:`DestinationExists`,
    and ``dest`` is untouched), so no check-then-rename race; ``tmp`` is then removed.
    On a file system without hard links the name is claimed with ``O_EXCL`` and our
    claim replaced (still no clobbering, but a reader may briefly see an empty file).
    """
    tmp, dest = Path(tmp), Path(dest)
    exists = DestinationExists(errno.EEXIST, "exists already", str(dest))
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise exists from None
    except OSError:  # no hard links here (FAT, some network file systems)
        try:
            fd = os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            raise exists from None
        os.close(fd)
        os.replace(tmp, dest)
        return
    tmp.unlink()


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically (fsynced before the rename)."""
    with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``dest`` atomically."""
    atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``dest`` atomically."""
    atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=True) + "\n")
