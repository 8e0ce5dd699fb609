"""Build small matrix/TRC ICC v2 profiles byte by byte (test helper: Pillow can only create sRGB/Lab/XYZ ones)."""

from __future__ import annotations

import struct

import numpy as np

D65 = (0.3127, 0.3290)
PRIMARIES = {
    "srgb": ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06)),
    "p3": ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)),
    "adobe": ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06)),
}
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
D50_XYZ = np.array([0.9642, 1.0, 0.8249])


def _xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1.0 - x - y) / y])


def rgb_to_xyz(name: str) -> np.ndarray:
    """Linear RGB -> XYZ under the space's own D65 white (columns: primaries scaled so RGB 1,1,1 = white)."""
    cols = np.stack([_xyz(p) for p in PRIMARIES[name]], axis=1)
    return cols * np.linalg.solve(cols, _xyz(D65))


def _to_d50(m: np.ndarray) -> np.ndarray:
    lms_src, lms_dst = _BRADFORD @ _xyz(D65), _BRADFORD @ D50_XYZ
    return np.linalg.inv(_BRADFORD) @ np.diag(lms_dst / lms_src) @ _BRADFORD @ m


def _s15(values) -> bytes:
    return b"".join(struct.pack(">i", round(v * 65536)) for v in values)


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 8 + b"\0\0\0" + b"\0" * 67


def _profile(space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    table, body = b"", b""
    offset = 128 + 4 + 12 * len(tags)
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += struct.pack(">4sII", sig, offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = struct.pack(">I4sI4s4s4s", size, b"none", 0x02100000, b"mntr", space, b"XYZ ")
    header += b"\0" * 12 + b"acsp" + b"\0" * 24 + struct.pack(">I", 0) + _s15(D50_XYZ)
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + body


SRGB_PARA = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)


def rgb_profile(name: str, gamma: float | None = None) -> bytes:
    """An RGB matrix/TRC profile of ``name``'s primaries: ``para`` sRGB curve, or a ``curv`` gamma."""
    m = _to_d50(rgb_to_xyz(name))
    trc = b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + _s15(SRGB_PARA)
    if gamma is not None:
        trc = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))
    tags = [(b"desc", _desc(f"test {name}")), (b"wtpt", b"XYZ \0\0\0\0" + _s15(D50_XYZ))]
    tags += [(s, b"XYZ \0\0\0\0" + _s15(m[:, i])) for i, s in enumerate((b"rXYZ", b"gXYZ", b"bXYZ"))]
    tags += [(s, trc) for s in (b"rTRC", b"gTRC", b"bTRC")]
    return _profile(b"RGB ", tags)


def gray_profile(gamma: float) -> bytes:
    trc = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))
    tags = [(b"desc", _desc("test gray")), (b"wtpt", b"XYZ \0\0\0\0" + _s15(D50_XYZ)), (b"kTRC", trc)]
    return _profile(b"GRAY", tags)


def srgb_decode(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def srgb_encode(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)


def expected_srgb(rgb: np.ndarray, name: str, gamma: float | None = None) -> np.ndarray:
    """Independent reference: decode, RGB -> XYZ (D65) -> linear sRGB, clip, sRGB-encode (float64)."""
    lin = srgb_decode(rgb) if gamma is None else np.power(rgb, round(gamma * 256) / 256)
    m = np.linalg.solve(rgb_to_xyz("srgb"), rgb_to_xyz(name))
    return srgb_encode(lin @ m.T)


def png_with_iccp(png: bytes, icc: bytes) -> bytes:
    """Insert an iCCP chunk after IHDR (OpenCV writes 16-bit PNGs but cannot embed a profile)."""
    import zlib

    body = b"test\0\0" + zlib.compress(icc)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    return png[:33] + chunk + png[33:]
