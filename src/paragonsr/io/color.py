"""Embedded ICC colour profiles: images are converted to sRGB when read, so models (trained on sRGB photos) see the
colours a colour-managed viewer shows, and outputs are plain sRGB.

- Matrix/TRC profiles (Display P3, Adobe RGB (1998), ProPhoto, Rec. 2020, gray ``kTRC`` profiles: what cameras,
  phones and editors embed) are converted here in float64: the profile's tone curves (``curv`` gamma or table,
  ``para`` types 0-4) to linear light, its colorant matrix to the D50 PCS, the inverse sRGB matrix (the
  Bradford-adapted one LittleCMS's own sRGB profile carries) and the sRGB curve (IEC 61966-2-1). No 8-bit
  step, so 16-bit and float images keep their precision. Relative colorimetric intent; colours outside the sRGB
  gamut are clipped per channel (as LittleCMS does).
- Other profiles (LUT-based ``A2B`` tables, CMYK/Lab data) go through LittleCMS (Pillow's ``ImageCms``), which
  works on 8-bit RGB here: such images are converted at 8-bit precision.
- Profiles equivalent to sRGB (the ubiquitous "sRGB IEC61966-2.1") leave the pixels untouched, and so do profiles
  for other data than the decoded pixels (CMYK: the decoder's own CMYK -> RGB is kept; gray profile on RGB).

Sources: ICC.1:2001-04 (v2) and ICC.1:2010 (v4) tag layouts; IEC 61966-2-1 for the sRGB curve.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

Curve = Callable[[np.ndarray], np.ndarray]


class ProfileError(ValueError):
    """The embedded profile cannot be read or applied (message says why; the caller names the file)."""


@dataclass(frozen=True)
class MatrixProfile:
    """A matrix/TRC profile: ``matrix`` 3×3 (columns = red/green/blue colorant XYZ, D50 PCS) or None for gray,
    ``curves`` per channel (encoded value in [0, 1] -> linear light), ``name`` its description."""

    name: str
    matrix: np.ndarray | None
    curves: tuple[Curve, ...]


def _s15(data: bytes, off: int, n: int) -> list[float]:
    return [v / 65536.0 for v in struct.unpack_from(f">{n}i", data, off)]


def _tags(data: bytes) -> dict[bytes, bytes]:
    if len(data) < 132 or data[36:40] != b"acsp":
        raise ProfileError("not an ICC profile (no 'acsp' signature)")
    (count,) = struct.unpack_from(">I", data, 128)
    out: dict[bytes, bytes] = {}
    for i in range(min(count, 1000)):
        sig, off, size = struct.unpack_from(">4sII", data, 132 + 12 * i)
        if off + size > len(data):
            raise ProfileError(f"tag {sig!r} runs past the end of the profile")
        out[sig] = data[off : off + size]
    return out


def _curve(tag: bytes) -> Curve:
    """A TRC tag (``curv`` or ``para``) as a function on float arrays in [0, 1]."""
    kind = tag[:4]
    if kind == b"curv":
        (n,) = struct.unpack_from(">I", tag, 8)
        if n == 0:
            return lambda x: x
        if n == 1:
            gamma = struct.unpack_from(">H", tag, 12)[0] / 256.0
            return lambda x: np.power(np.clip(x, 0.0, None), gamma)
        table = np.frombuffer(tag, ">u2", n, 12).astype(np.float64) / 65535.0
        grid = np.linspace(0.0, 1.0, n)
        return lambda x: np.interp(x, grid, table)
    if kind == b"para":
        (ftype,) = struct.unpack_from(">H", tag, 8)
        nparams = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(ftype)
        if nparams is None:
            raise ProfileError(f"unknown parametric curve type {ftype}")
        p = _s15(tag, 12, nparams) + [0.0] * (7 - nparams)
        g, a, b, c, d, e, f = p
        if ftype == 0:
            a, b, c, d, e, f = 1.0, 0.0, 0.0, 0.0, 0.0, 0.0
        elif ftype == 1:  # (aX+b)^g for X >= -b/a, else 0
            d, c, e, f = -b / a, 0.0, 0.0, 0.0
        elif ftype == 2:  # (aX+b)^g + c for X >= -b/a, else c
            d, e, f, c = -b / a, c, c, 0.0
        # type 3: (aX+b)^g for X >= d, else cX; type 4 adds e and f to the two pieces.

        def para(x: np.ndarray) -> np.ndarray:
            hi = np.power(np.clip(a * x + b, 0.0, None), g) + e
            return np.where(x >= d, hi, c * x + f)

        return para
    raise ProfileError(f"unsupported tone curve type {kind!r}")


def _description(tags: dict[bytes, bytes]) -> str:
    tag = tags.get(b"desc", b"")
    try:
        if tag[:4] == b"desc":  # v2: ASCII count + text
            (n,) = struct.unpack_from(">I", tag, 8)
            return tag[12 : 12 + n].split(b"\0")[0].decode("latin-1").strip()
        if tag[:4] == b"mluc":  # v4: first record, UTF-16BE
            length, off = struct.unpack_from(">II", tag, 20)
            return tag[off : off + length].decode("utf-16-be").strip("\0 ")
    except (struct.error, UnicodeDecodeError):
        pass
    return "unnamed profile"


def parse_matrix_profile(data: bytes) -> MatrixProfile | None:
    """The matrix/TRC model of an RGB or gray profile, or None when LittleCMS must apply it (LUT-based tables,
    other colour spaces). Raises ``ProfileError`` for data that is not a readable ICC profile."""
    tags = _tags(data)
    space, pcs = data[16:20], data[20:24]
    name = _description(tags)
    if pcs != b"XYZ " or b"A2B0" in tags or b"A2B1" in tags:
        return None
    try:
        if space == b"GRAY" and b"kTRC" in tags:
            return MatrixProfile(name, None, (_curve(tags[b"kTRC"]),))
        if space == b"RGB " and all(
            t in tags for t in (b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC")
        ):
            cols = [_s15(tags[t], 8, 3) for t in (b"rXYZ", b"gXYZ", b"bXYZ")]
            curves = tuple(_curve(tags[t]) for t in (b"rTRC", b"gTRC", b"bTRC"))
            return MatrixProfile(name, np.array(cols, dtype=np.float64).T, curves)
    except (struct.error, ValueError, ZeroDivisionError) as exc:
        raise ProfileError(f"damaged profile '{name}' ({exc})") from None
    return None


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB-encoded values (IEC 61966-2-1), both in [0, 1] (clipped)."""
    v = np.clip(linear, 0.0, 1.0)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1.0 / 2.4) - 0.055)


@lru_cache(maxsize=1)
def srgb_profile_bytes() -> bytes:
    """The ICC bytes of Little CMS's built-in sRGB profile (via Pillow's ``ImageCms``), built once."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@lru_cache(maxsize=1)
def _srgb_matrix() -> np.ndarray:
    prof = parse_matrix_profile(srgb_profile_bytes())
    assert prof is not None and prof.matrix is not None
    return prof.matrix


def _is_srgb(prof: MatrixProfile) -> bool:
    """Same colorants and curves as sRGB (within what 8-bit output could show)."""
    if prof.matrix is not None and not np.allclose(prof.matrix, _srgb_matrix(), atol=2e-3):
        return False
    x = np.linspace(0.0, 1.0, 257)
    ref = np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))
    return all(np.abs(srgb_encode(c(x)) - srgb_encode(ref)).max() < 1e-3 for c in prof.curves)


_N = 65535  # table steps: 16-bit codes k/65535 (and 8-bit ones, k*257/65535) fall exactly on the grid
_GRID = np.linspace(0.0, 1.0, _N + 1)


def _lookup(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table`` (values of a curve on ``_GRID``) at ``x``, clipped to [0, 1], linearly interpolated; float32."""
    pos = np.clip(x, 0.0, 1.0).astype(np.float32) * np.float32(_N)
    i = np.minimum(pos.astype(np.int32), _N - 1)
    lo = table[i]
    return lo + (pos - i) * (table[i + 1] - lo)


@lru_cache(maxsize=1)
def _srgb_encode_table() -> np.ndarray:
    return srgb_encode(_GRID).astype(np.float32)


def convert_matrix_to_srgb(img: np.ndarray, prof: MatrixProfile, chunk: int = 1 << 18) -> np.ndarray:
    """float HWC (1 gray or 3 RGB colour channels, alpha excluded) in the profile's space -> sRGB, float32.

    The curves are tabulated once on a 65536-point grid (computed in float64): exact for 8/16-bit codes, linear
    interpolation between them for float inputs (error < 1e-6). Applied ``chunk`` pixels at a time, so a 4K image
    needs a few MB of temporaries. Values outside [0, 1] (and out-of-gamut results) are clipped."""
    m = None if prof.matrix is None else np.linalg.solve(_srgb_matrix(), prof.matrix)  # RGB -> XYZ -> sRGB
    decode = [curve(_GRID).astype(np.float32) for curve in prof.curves]
    encode = _srgb_encode_table()
    flat = img.reshape(-1, img.shape[-1])
    out = np.empty(flat.shape, np.float32)
    for start in range(0, len(flat), chunk):
        x = flat[start : start + chunk]
        lin = [_lookup(x[:, i], decode[i]) for i in range(len(decode))]
        if m is None:
            out[start : start + chunk, 0] = _lookup(lin[0], encode)
            continue
        for row in range(3):  # 3x3 matrix as three multiply-adds (cheaper than a BLAS call per chunk)
            mixed = (
                lin[0] * np.float32(m[row, 0])
                + lin[1] * np.float32(m[row, 1])
                + lin[2] * np.float32(m[row, 2])
            )
            out[start : start + chunk, row] = _lookup(mixed, encode)
    return out.reshape(img.shape)


def _convert_lcms(img: np.ndarray, data: bytes) -> np.ndarray:
    """LittleCMS on the 8-bit quantised colour channels (RGB or gray), back to float32 in [0, 1]."""
    from PIL import Image, ImageCms

    gray = img.shape[2] == 1
    u8 = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    im = Image.fromarray(u8[..., 0] if gray else u8, "L" if gray else "RGB")
    src = ImageCms.ImageCmsProfile(io.BytesIO(data))
    dst = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    try:
        out = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
    except ImageCms.PyCMSError as exc:
        raise ProfileError(f"LittleCMS cannot apply the profile ({exc})") from None
    arr = np.asarray(out, dtype=np.float32) / 255.0
    if gray:  # a gray image stays gray: the converted gray is neutral, keep its green (= luma) channel
        arr = arr[..., 1:2]
    return arr


def to_srgb(img: np.ndarray, icc: bytes) -> tuple[np.ndarray, str | None]:
    """Convert float HWC (gray, gray + alpha, RGB, RGBA) in [0, 1] tagged with ``icc`` to sRGB.

    Returns the image and the profile name it was converted from, or ``(img, None)`` unchanged when the profile
    is sRGB already or describes other data than the decoded pixels (a gray profile on RGB pixels, a CMYK
    profile: the decoder already made RGB from CMYK; colour-managed viewers ignore such profiles too). Alpha is
    never touched. Raises ``ProfileError`` for unreadable/unusable profiles."""
    c = img.shape[2]
    n_color = 1 if c in (1, 2) else 3
    prof = parse_matrix_profile(icc)
    if icc[16:20] != (b"GRAY" if n_color == 1 else b"RGB "):
        return img, None
    if prof is not None and _is_srgb(prof):
        return img, None
    color = img[..., :n_color]
    out = convert_matrix_to_srgb(color, prof) if prof is not None else _convert_lcms(color, icc)
    name = prof.name if prof is not None else _description(_tags(icc))
    if c in (2, 4):
        out = np.concatenate([out, img[..., n_color:]], axis=-1)
    return np.ascontiguousarray(out, dtype=np.float32), name


def file_to_srgb(img: np.ndarray, icc: bytes, path: str) -> tuple[np.ndarray, str | None]:
    """:func:`to_srgb` for a decoded file: a bad profile becomes an ``ImageReadError`` naming ``path``."""
    from paragonsr.io.image_io import ImageReadError

    try:
        return to_srgb(img, icc)
    except ProfileError as exc:
        raise ImageReadError(f"{path}: embedded ICC colour profile: {exc}") from None


__all__ = [
    "MatrixProfile",
    "ProfileError",
    "convert_matrix_to_srgb",
    "file_to_srgb",
    "parse_matrix_profile",
    "srgb_encode",
    "srgb_profile_bytes",
    "to_srgb",
]
