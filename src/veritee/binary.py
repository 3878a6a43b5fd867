"""A bounds-checked little-endian reader: every overrun is a ParseError naming the field."""

from __future__ import annotations

import struct

from veritee.errors import ParseError


class Reader:
    """Reads fields in order from an immutable buffer; ``what`` names the structure."""

    def __init__(self, data: bytes, what: str, offset: int = 0) -> None:
        self.data = data
        self.what = what
        self.pos = offset

    def take(self, n: int, field: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ParseError(
                self.what,
                f"truncated: {field} needs {n} bytes, {max(len(self.data) - self.pos, 0)} left",
                self.pos,
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self, field: str) -> int:
        value: int = struct.unpack("<H", self.take(2, field))[0]
        return value

    def u32(self, field: str) -> int:
        value: int = struct.unpack("<I", self.take(4, field))[0]
        return value

    def u64(self, field: str) -> int:
        value: int = struct.unpack("<Q", self.take(8, field))[0]
        return value

    def remaining(self) -> int:
        return len(self.data) - self.pos
