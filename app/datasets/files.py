"""Data files read as text while counting the bytes read from disk, for progress against size.

For a compressed file (``.xz``) the count is of compressed bytes, so it still ends at the
file's size.
"""

from __future__ import annotations

import io
import lzma
from pathlib import Path
from typing import IO, cast


class CountingFile(io.RawIOBase):
    """A binary file that counts the bytes read from it."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._file.readinto(buffer)
        self.bytes_read += n or 0
        return n or 0

    def close(self) -> None:
        self._file.close()
        super().close()


def open_text(path: Path, *, errors: str = "strict") -> tuple[IO[str], CountingFile]:
    """The file as UTF-8 text (decompressed when it ends in ``.xz``) and its byte counter."""
    raw = CountingFile(path)
    # The caller closes the text file, which closes the layers beneath it.
    binary: IO[bytes] = (
        lzma.LZMAFile(cast(IO[bytes], raw), "rb")  # noqa: SIM115 - the caller closes it
        if path.suffix == ".xz"
        else io.BufferedReader(raw)
    )
    return io.TextIOWrapper(binary, encoding="utf-8", errors=errors, newline=""), raw
