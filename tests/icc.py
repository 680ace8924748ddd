"""Build small ICC v2 RGB matrix/TRC profiles for tests, so no profile file has to be shipped."""

from __future__ import annotations

import struct

SRGB_PRIMARIES_D50 = {
    "r": (0.4361, 0.2225, 0.0139),
    "g": (0.3851, 0.7169, 0.0971),
    "b": (0.1431, 0.0606, 0.7141),
}
D50 = (0.9642, 1.0, 0.8249)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(xyz: tuple[float, float, float]) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in xyz)


def _curve(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def _desc(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_text)) + ascii_text + b"\0" * 8 + b"\0\0\0" + b"\0" * 67


def rgb_profile(primaries: dict[str, tuple[float, float, float]], gamma: float = 2.2, name: str = "test") -> bytes:
    """An RGB display profile with the given D50-adapted primaries (keys r, g, b) and a pure-gamma curve."""
    tags = [
        (b"desc", _desc(name)),
        (b"wtpt", _xyz(D50)),
        (b"rXYZ", _xyz(primaries["r"])),
        (b"gXYZ", _xyz(primaries["g"])),
        (b"bXYZ", _xyz(primaries["b"])),
        (b"rTRC", _curve(gamma)),
        (b"gTRC", _curve(gamma)),
        (b"bTRC", _curve(gamma)),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + b"\0\0\0\0"
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + b"".join(_s15(v) for v in D50)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data
