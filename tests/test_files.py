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
