"""Atomic writes: replace by default; with overwrite=False a destination that exists,
even one created while writing, is kept (also where hard links are unavailable)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from voiceconv.utils import atomic
from voiceconv.utils.atomic import DestinationExists, atomic_path


def write(dest: Path, data: bytes, *, overwrite: bool, appear: bytes | None = None) -> None:
    """Write ``data`` through atomic_path; ``appear`` is created at ``dest`` mid-write."""
    with atomic_path(dest, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
        if appear is not None:
            dest.write_bytes(appear)


@pytest.fixture(params=["link", "no-link"])
def links(request, monkeypatch) -> str:
    """Run with hard links, and as on a file system without them (os.link: EPERM)."""
    if request.param == "no-link":
        def no_link(src, dst, *args, **kwargs):
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(atomic.os, "link", no_link)
    return request.param


def test_no_clobber_creates_a_new_file(tmp_path: Path, links: str) -> None:
    dest = tmp_path / "sub" / "out.bin"
    write(dest, b"new", overwrite=False)
    assert dest.read_bytes() == b"new"
    assert os.listdir(dest.parent) == ["out.bin"]  # the temporary file is gone


def test_no_clobber_keeps_a_file_that_appeared_while_writing(tmp_path: Path, links: str) -> None:
    dest = tmp_path / "out.bin"
    with pytest.raises(DestinationExists) as info:
        write(dest, b"ours", overwrite=False, appear=b"theirs")
    assert isinstance(info.value, FileExistsError) and info.value.filename == str(dest)
    assert dest.read_bytes() == b"theirs"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_overwrite_replaces_a_file_that_appeared_while_writing(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    write(dest, b"ours", overwrite=True, appear=b"theirs")
    assert dest.read_bytes() == b"ours"
    assert os.listdir(tmp_path) == ["out.bin"]
