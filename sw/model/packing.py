"""Hugging Face BitNet 2-bit weight packing (``transformers.integrations.bitnet.pack_weights`` layout).

Each ternary value ``t`` is stored as the 2-bit code ``t + 1`` in {0, 1, 2}; four codes share a byte and
are packed along the **output** (first) dimension: with ``R = ceil(out / 4)`` packed rows, byte row ``i``
holds rows ``i, i + R, i + 2R, i + 3R`` in bit fields ``[1:0], [3:2], [5:4], [7:6]``. Rows past ``out``
(when ``out`` is not a multiple of 4) are padding fields, written as 0 by :func:`pack_ternary` exactly
like ``pack_weights`` does. Code 3 is invalid everywhere.

This is the *checkpoint* format; the accelerator's weight *stream* formats (``2bit``, ``base3``) live in
``hw/formats.py``. Only the grouping differs: the bytes themselves are the stream format ``2bit``'s
(code ``j`` of a byte in bits ``2j .. 2j+1``), so they are packed and decoded by its codec
(:data:`hw.formats.CODECS` ``["2bit"]``).
"""

from __future__ import annotations

import numpy as np
import torch

from hw.formats import CODECS, INVALID_CODE

__all__ = ["VALUES_PER_BYTE", "PackingError", "pack_ternary", "unpack_ternary", "packed_rows"]

_CODEC = CODECS["2bit"]
VALUES_PER_BYTE = _CODEC.codes_per_byte   # 4


class PackingError(ValueError):
    """Bad packed or ternary data (one line)."""


def packed_rows(out_features: int) -> int:
    """Number of packed byte rows for ``out_features`` ternary rows: ``ceil(out / 4)``."""
    if not isinstance(out_features, int) or out_features < 1:
        raise PackingError(f"out_features={out_features!r} must be a positive integer")
    return (out_features + VALUES_PER_BYTE - 1) // VALUES_PER_BYTE


def pack_ternary(t: torch.Tensor) -> torch.Tensor:
    """Packs ternary values ``t`` (out, ...) in {-1, 0, 1} (any int/float dtype) into uint8 (ceil(out/4), ...)."""
    if not isinstance(t, torch.Tensor) or t.dim() < 1 or t.shape[0] == 0:
        raise PackingError("pack_ternary needs a tensor with a non-empty first dimension")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise PackingError("ternary tensor contains NaN or Inf")
    if not bool(((t == -1) | (t == 0) | (t == 1)).all()):
        raise PackingError("ternary tensor has values outside {-1, 0, 1}")
    out = t.shape[0]
    r = packed_rows(out)
    codes = np.zeros((VALUES_PER_BYTE * r, *t.shape[1:]), dtype=np.uint8)   # padding fields: code 0
    codes[:out] = (t.detach().cpu().to(torch.int16) + 1).to(torch.uint8).numpy()
    # field j of byte row i is row i + j*r: (4, r, ...) -> digits (r, ..., 4)
    digits = np.moveaxis(codes.reshape(VALUES_PER_BYTE, r, *t.shape[1:]), 0, -1)
    return torch.from_numpy(_CODEC.pack_digits(digits))


def unpack_ternary(packed: torch.Tensor, out_features: int | None = None) -> torch.Tensor:
    """Unpacks uint8 (R, ...) into int8 ternary (out_features, ...); ``out_features`` defaults to ``4R``.

    Raises :class:`PackingError` if any 2-bit field (padding included) holds code 3, or if the shape does
    not match ``R == ceil(out_features / 4)``.
    """
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        raise PackingError(f"packed weights must be uint8, got {getattr(packed, 'dtype', type(packed).__name__)}")
    if packed.dim() < 1 or packed.shape[0] == 0:
        raise PackingError("packed weights need a non-empty first dimension")
    r = packed.shape[0]
    if out_features is None:
        out_features = VALUES_PER_BYTE * r
    if packed_rows(out_features) != r:
        raise PackingError(f"packed weights have {r} rows, expected ceil({out_features}/4) = "
                           f"{packed_rows(out_features)}")
    fields = np.moveaxis(_CODEC.byte_codes[packed.detach().cpu().numpy()], -1, 0)   # (4, R, ...)
    bad = np.argwhere(fields == INVALID_CODE)
    if bad.size:
        idx = [int(i) for i in bad[0]]
        row = idx[0] * r + idx[1]
        raise PackingError(f"invalid 2-bit code 3 at byte {tuple(idx[1:])} field {idx[0]} (row {row}); "
                           "codes must be 0, 1 or 2")
    t = fields.reshape(VALUES_PER_BYTE * r, *packed.shape[1:]).astype(np.int8) - 1
    return torch.from_numpy(np.ascontiguousarray(t[:out_features]))
