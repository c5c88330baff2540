"""GenICam pixel formats → BGR uint8 (the :class:`~edgeseg.camera.frame.Frame` image).

Names and codes follow the GenICam Pixel Format Naming Convention (PFNC), which GigE Vision and
USB3 Vision cameras report in every buffer. Supported:

- ``Mono8``; ``Mono10``/``Mono12``/``Mono14``/``Mono16`` (one little-endian 16-bit word per
  pixel); ``Mono10p``/``Mono12p`` (PFNC packing: a little-endian bit stream, LSB first) and
  ``Mono10Packed``/``Mono12Packed`` (GigE Vision packing: two pixels in three bytes, high bits
  in the outer bytes). Deeper-than-8-bit values keep their top 8 bits.
- ``BayerRG8``/``BayerGR8``/``BayerGB8``/``BayerBG8`` (the name is the 2×2 pattern at the
  top-left pixel) and their 10/12-bit unpacked variants, demosaiced bilinearly by OpenCV.
- ``RGB8`` and ``BGR8`` (interleaved).
"""

from __future__ import annotations

from typing import Union

import numpy as np

__all__ = [
    "PIXEL_FORMATS",
    "SUPPORTED_FORMATS",
    "bgr_from_buffer",
    "format_name",
    "unpack_mono",
]

#: PFNC name → 32-bit code (as in a GigE Vision / USB3 Vision image leader).
PIXEL_FORMATS: dict[str, int] = {
    "Mono8": 0x01080001,
    "Mono10": 0x01100003,
    "Mono10Packed": 0x010C0004,
    "Mono12": 0x01100005,
    "Mono12Packed": 0x010C0006,
    "Mono14": 0x01100025,
    "Mono16": 0x01100007,
    "Mono10p": 0x010A0046,
    "Mono12p": 0x010C0047,
    "BayerGR8": 0x01080008,
    "BayerRG8": 0x01080009,
    "BayerGB8": 0x0108000A,
    "BayerBG8": 0x0108000B,
    "BayerGR10": 0x0110000C,
    "BayerRG10": 0x0110000D,
    "BayerGB10": 0x0110000E,
    "BayerBG10": 0x0110000F,
    "BayerGR12": 0x01100010,
    "BayerRG12": 0x01100011,
    "BayerGB12": 0x01100012,
    "BayerBG12": 0x01100013,
    "RGB8": 0x02180014,
    "BGR8": 0x02180015,
}
_NAMES = {code: name for name, code in PIXEL_FORMATS.items()}
#: Sorted names of the formats :func:`bgr_from_buffer` converts.
SUPPORTED_FORMATS: list[str] = sorted(PIXEL_FORMATS)

# Significant bits of the formats stored as one 16-bit word per pixel.
_WORD_BITS = {"Mono10": 10, "Mono12": 12, "Mono14": 14, "Mono16": 16}
_PACKED_BITS = {"Mono10p": 10, "Mono12p": 12, "Mono10Packed": 10, "Mono12Packed": 12}
# Bayer pattern (top-left 2×2, row-major) → OpenCV code; OpenCV's own short names (BayerBG2BGR
# for an RGGB sensor) describe another corner, so the explicit four-letter aliases are used.
_BAYER_CODES = {"RG": "RGGB", "GR": "GRBG", "GB": "GBRG", "BG": "BGGR"}

BufferLike = Union[bytes, bytearray, memoryview, np.ndarray]


def format_name(code_or_name: Union[int, str]) -> str:
    """The PFNC name of a pixel format code (or name); ValueError naming the supported ones."""
    if isinstance(code_or_name, str):
        if code_or_name in PIXEL_FORMATS:
            return code_or_name
    elif int(code_or_name) in _NAMES:
        return _NAMES[int(code_or_name)]
    shown = code_or_name if isinstance(code_or_name, str) else f"0x{int(code_or_name):08X}"
    raise ValueError(
        f"pixel format {shown} is not supported; supported: {', '.join(SUPPORTED_FORMATS)}"
    )


def _bits_per_pixel(name: str) -> int:
    """Bits a pixel occupies in the buffer (PFNC codes carry it in bits 16-23)."""
    return (PIXEL_FORMATS[name] >> 16) & 0xFF


def expected_size(name: str, width: int, height: int) -> int:
    """Bytes of a ``width``×``height`` image in format ``name`` (packed formats rounded up)."""
    return (width * height * _bits_per_pixel(name) + 7) // 8


def _as_bytes(data: BufferLike, size: int, name: str, width: int, height: int) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    raw = raw.reshape(-1).view(np.uint8)
    if raw.size < size:
        raise ValueError(f"{name} {width}x{height} needs {size} bytes, the buffer holds {raw.size}")
    return raw[:size]


def unpack_mono(data: BufferLike, name: str, width: int, height: int) -> np.ndarray:
    """The pixel values (uint16, H×W) of a 10/12/14/16-bit mono or Bayer buffer."""
    n = width * height
    raw = _as_bytes(data, expected_size(name, width, height), name, width, height)
    if name in _PACKED_BITS:
        group = 5 if name == "Mono10p" else 3  # bytes per group of 4 (Mono10p) or 2 pixels
        padded = np.zeros(-(-raw.size // group) * group, np.uint16)
        padded[: raw.size] = raw
        b = padded.reshape(-1, group)
        if name == "Mono10p":
            px = np.stack(
                [
                    b[:, 0] | ((b[:, 1] & 0x03) << 8),
                    (b[:, 1] >> 2) | ((b[:, 2] & 0x0F) << 6),
                    (b[:, 2] >> 4) | ((b[:, 3] & 0x3F) << 4),
                    (b[:, 3] >> 6) | (b[:, 4] << 2),
                ],
                axis=1,
            )
        elif name == "Mono12p":
            px = np.stack([b[:, 0] | ((b[:, 1] & 0x0F) << 8), (b[:, 1] >> 4) | (b[:, 2] << 4)], 1)
        elif name == "Mono12Packed":
            px = np.stack([(b[:, 0] << 4) | (b[:, 1] & 0x0F), (b[:, 2] << 4) | (b[:, 1] >> 4)], 1)
        else:  # Mono10Packed
            px = np.stack(
                [(b[:, 0] << 2) | (b[:, 1] & 0x03), (b[:, 2] << 2) | ((b[:, 1] >> 4) & 0x03)], 1
            )
        return px.reshape(-1)[:n].reshape(height, width)
    if _bits_per_pixel(name) != 16:
        raise ValueError(f"{name} is not a 10/12/14/16-bit format")
    return raw.view("<u2").reshape(height, width).astype(np.uint16, copy=False)


def _packed_top8(data: BufferLike, name: str, width: int, height: int) -> np.ndarray:
    """The top 8 bits of each pixel of a packed buffer, straight from the bytes (the 8-bit
    image needs no full unpack: 10x faster than :func:`unpack_mono` then a shift)."""
    n = width * height
    raw = _as_bytes(data, expected_size(name, width, height), name, width, height)
    group = 5 if name == "Mono10p" else 3
    if raw.size % group:
        raw = np.concatenate([raw, np.zeros(group - raw.size % group, np.uint8)])
    b = raw.reshape(-1, group)
    out = np.empty((b.shape[0], 4 if group == 5 else 2), np.uint8)
    if name == "Mono10p":
        out[:, 0] = (b[:, 0] >> 2) | (b[:, 1] << 6)
        out[:, 1] = (b[:, 1] >> 4) | (b[:, 2] << 4)
        out[:, 2] = (b[:, 2] >> 6) | (b[:, 3] << 2)
        out[:, 3] = b[:, 4]
    elif name == "Mono12p":
        out[:, 0] = (b[:, 0] >> 4) | (b[:, 1] << 4)
        out[:, 1] = b[:, 2]
    else:  # GigE Vision packing keeps the high 8 bits of both pixels in bytes 0 and 2
        out[:, 0] = b[:, 0]
        out[:, 1] = b[:, 2]
    return out.reshape(-1)[:n].reshape(height, width)


def _significant_bits(name: str) -> int:
    if name in _PACKED_BITS:
        return _PACKED_BITS[name]
    if name in _WORD_BITS:
        return _WORD_BITS[name]
    return int(name[7:]) if name.startswith("Bayer") else 8


def _to_8bit(values: np.ndarray, bits: int) -> np.ndarray:
    """Top 8 of ``bits`` significant bits (values above the range saturate at 255)."""
    return np.minimum(values >> (bits - 8), 255).astype(np.uint8)


def bgr_from_buffer(data: BufferLike, pixel_format: Union[int, str], width: int, height: int):
    """An H×W×3 uint8 BGR image from one camera buffer (``data``: its image bytes).

    Raises ValueError for an unsupported format or a buffer smaller than the image.
    """
    import cv2

    name = format_name(pixel_format)
    if name in ("RGB8", "BGR8"):
        img = _as_bytes(data, width * height * 3, name, width, height).reshape(height, width, 3)
        return cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if name == "RGB8" else img.copy()
    bits = _significant_bits(name)
    if bits == 8:
        plane = _as_bytes(data, width * height, name, width, height).reshape(height, width)
    elif name in _PACKED_BITS:
        plane = _packed_top8(data, name, width, height)
    else:
        plane = _to_8bit(unpack_mono(data, name, width, height), bits)
    if name.startswith("Bayer"):
        pattern = _BAYER_CODES[name[5:7]]
        return cv2.cvtColor(np.ascontiguousarray(plane), getattr(cv2, f"COLOR_Bayer{pattern}2BGR"))
    return cv2.cvtColor(np.ascontiguousarray(plane), cv2.COLOR_GRAY2BGR)
