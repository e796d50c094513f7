"""resattn.files: a file is replaced completely or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from resattn.files import atomic_write, replaced_atomically


def test_atomic_write_creates_folders_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write(target, lambda fh: fh.write("one\n"), mode="w")
    atomic_write(target, lambda fh: fh.write("two\n"), mode="w")
    assert target.read_text() == "two\n"
    atomic_write(target, lambda fh: fh.write(b"\x00\x01"))
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")

    def half(fh) -> None:
        fh.write("new, half wri")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        atomic_write(target, half, mode="w")
    assert target.read_text() == "old"
    with pytest.raises(KeyboardInterrupt), replaced_atomically(target) as tmp:
        Path(tmp).write_text("new")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_new_files_follow_the_umask_and_replaced_files_keep_their_mode(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        target = tmp_path / "weights.pt"
        atomic_write(target, lambda fh: fh.write(b"1"))
        assert stat.S_IMODE(target.stat().st_mode) == 0o644  # mkstemp alone would make it 0600
        os.umask(0o077)
        private = tmp_path / "private.json"
        atomic_write(private, lambda fh: fh.write("{}"), mode="w")
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        target.chmod(0o640)
        atomic_write(target, lambda fh: fh.write(b"2"))
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
    finally:
        os.umask(old)
