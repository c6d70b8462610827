"""Image decoding and resizing as the MLPerf inference reference does them with OpenCV, without OpenCV.

The reference's vision harness (mlcommons/inference ``vision/classification_and_detection/python``) reads
each image with ``cv2.imread`` (8-bit BGR, EXIF orientation applied, grey images as three equal channels) and
resizes it with ``cv2.resize``. mlbench reads with Pillow and resizes here, in numpy, following OpenCV's
arithmetic so that the tensors agree with the reference's (``benchmarks/preprocess_check.py`` measures the
difference on real JPEGs against OpenCV itself):

- :func:`resize_area` is ``cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)`` on uint8 images:
  shrinking by a non-integer factor averages each output pixel's footprint with fractional edge weights in
  float32, in OpenCV's order, rounded to nearest-even; by an integer factor, an integer mean (halves round up
  when the factor is 2); enlarging, a fixed-point bilinear with the area method's own sample positions.
- :func:`resize_linear` is ``cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)`` on float32 images:
  bilinear with half-pixel centres and edge clamping, no antialiasing.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from mlbench.errors import DataError

_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS: fixed-point weights of 8-bit bilinear resizing
_COEF_SCALE = 1 << _COEF_BITS


def imread_rgb(path: str | Path) -> np.ndarray:
    """The image at ``path`` as uint8 ``[H, W, 3]`` RGB: what ``cv2.cvtColor(cv2.imread(path), BGR2RGB)``
    gives (EXIF orientation applied, grey and palette images expanded to three channels)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:  # PIL raises all on corrupt files
        raise DataError(f"corrupt or unreadable image {path}: {exc}",
                        "replace the file with an intact copy or remove it from the dataset") from exc


def resize_area(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)`` for a uint8 ``[H, W, C]`` image."""
    img = np.ascontiguousarray(img)
    if img.dtype != np.uint8 or img.ndim != 3:
        raise ValueError(f"resize_area takes a uint8 [H, W, C] image, not {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    sx, sy = 1.0 / (width / w), 1.0 / (height / h)  # OpenCV's scale: 1 / (dsize / ssize)
    if sx >= 1 and sy >= 1:
        ix, iy = round(sx), round(sy)
        if abs(sx - ix) < np.finfo(float).eps and abs(sy - iy) < np.finfo(float).eps:
            return _area_integer(img, ix, iy, width, height)
        return _area_fractional(img, width, height, sx, sy)
    return _linear_fixed_point(img, width, height, sx, sy, area=True)


def resize_linear(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)`` for a float32 ``[H, W, C]`` image.

    Computed in float64 and rounded once: OpenCV's wheels for x86 run this through Intel IPP, which agrees with
    it to 3e-5 on a 0-255 image; OpenCV's own float32 code (without IPP) differs from both by up to 0.03."""
    img = np.asarray(img, dtype=np.float64)
    h, w = img.shape[:2]
    x0, x1, ax = _linear_taps(w, width, 1.0 / (width / w), exact=True)
    y0, y1, ay = _linear_taps(h, height, 1.0 / (height / h), exact=True)
    across = img[:, x0] * (1 - ax)[None, :, None] + img[:, x1] * ax[None, :, None]
    return (across[y0] * (1 - ay)[:, None, None] + across[y1] * ay[:, None, None]).astype(np.float32)


# ------------------------------------------------------------------------------------------------ details
def _linear_taps(src: int, dst: int, scale: float, area: bool = False, rows: bool = False, exact: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output position: the two source indices and the float32 weight of the second, as OpenCV
    computes them (``area``: the sample positions of INTER_AREA when it enlarges; ``exact``: float64 weights,
    as IPP). Across a row a position outside the image takes the edge pixel alone; down the columns
    (``rows``) OpenCV keeps the weight and clamps both row indices instead."""
    d = np.arange(dst, dtype=np.float64)
    if exact:
        pos = (d + 0.5) * scale - 0.5
        s = np.floor(pos).astype(np.int64)
        f = pos - s
        f[s < 0], f[s >= src - 1] = 0, 0
        return np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1), f
    if area:
        s = np.floor(d * scale).astype(np.int64)
        f = ((d + 1) - (s + 1) * (1.0 / scale)).astype(np.float32)
        f = np.where(f <= 0, np.float32(0), f - np.floor(f)).astype(np.float32)
    else:
        pos = ((d + 0.5) * scale - 0.5).astype(np.float32)
        s = np.floor(pos).astype(np.int64)
        f = (pos - s).astype(np.float32)
    if rows:
        return np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1), f
    low = s < 0
    f[low], s[low] = 0, 0
    high = s >= src - 1
    f[high], s[high] = 0, src - 1
    return s, np.minimum(s + 1, src - 1), f


def _area_integer(img: np.ndarray, ix: int, iy: int, width: int, height: int) -> np.ndarray:
    """An integer shrink factor: the mean of each ``iy`` x ``ix`` block (OpenCV's fast area path)."""
    h, w, c = img.shape
    if height * iy > h or width * ix > w:  # a partial block at the edge: OpenCV averages what there is
        return _area_fractional(img, width, height, float(ix), float(iy))
    blocks = img[:height * iy, :width * ix].astype(np.int32).reshape(height, iy, width, ix, c).sum(axis=(1, 3))
    if ix == 2 and iy == 2:
        return ((blocks + 2) >> 2).astype(np.uint8)
    return _round_u8(blocks.astype(np.float32) * np.float32(1.0 / (ix * iy)))


@functools.lru_cache(maxsize=256)  # a dataset holds few distinct image sizes
def _area_table(src: int, dst: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's decimation table as dense taps: ``index [dst, taps]`` and float32 ``weight [dst, taps]`` in
    its order (a partial first cell, whole cells, a partial last cell; unused taps weigh 0)."""
    taps: list[list[tuple[int, float]]] = []
    for dx in range(dst):
        f1 = dx * scale
        f2 = f1 + scale
        cell = min(scale, src - f1)
        s1, s2 = math.ceil(f1), math.floor(f2)
        s2 = min(s2, src - 1)
        s1 = min(s1, s2)
        row = []
        if s1 - f1 > 1e-3:
            row.append((s1 - 1, (s1 - f1) / cell))
        row.extend((s, 1.0 / cell) for s in range(s1, s2))
        if f2 - s2 > 1e-3:
            row.append((s2, min(min(f2 - s2, 1.0), cell) / cell))
        taps.append(row)
    k = max(len(r) for r in taps)
    index = np.zeros((dst, k), np.int64)
    weight = np.zeros((dst, k), np.float32)
    for d, row in enumerate(taps):
        for t, (s, a) in enumerate(row):
            index[d, t], weight[d, t] = s, np.float32(a)
    return index, weight


def _area_fractional(img: np.ndarray, width: int, height: int, sx: float, sy: float) -> np.ndarray:
    """A non-integer shrink: float32 sums in OpenCV's order (each source row across, then rows down). Columns
    are gathered from a transposed copy, where each is one contiguous row (numpy gathers rows fast)."""
    h, w, c = img.shape
    xi, xw = _area_table(w, width, sx)
    yi, yw = _area_table(h, height, sy)
    used = np.unique(yi)  # the source rows some output row reads
    cols = np.ascontiguousarray(img[used].transpose(1, 0, 2)).reshape(w, -1).astype(np.float32)  # [W, rows*C]
    across = _taps(cols, xi, xw)
    across = np.ascontiguousarray(across.reshape(width, len(used), c).transpose(1, 0, 2)).reshape(len(used), -1)
    rows = np.searchsorted(used, yi)  # each output row's taps as positions in ``used``
    return _round_u8(_taps(across, rows, yw)).reshape(height, width, c)


def _taps(src: np.ndarray, index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Row k of the result: the sum over taps t, in tap order, of ``src[index[k, t]] * weight[k, t]``."""
    out = np.take(src, index[:, 0], axis=0)
    out *= weight[:, 0, None]
    term = np.empty_like(out)
    for t in range(1, index.shape[1]):
        np.take(src, index[:, t], axis=0, out=term)
        term *= weight[:, t, None]
        out += term
    return out


def _linear_fixed_point(img: np.ndarray, width: int, height: int, sx: float, sy: float, area: bool) -> np.ndarray:
    """OpenCV's 8-bit bilinear: 11-bit weights, a horizontal pass in integers, a vertical pass with its
    rounding (the one its vector code uses)."""
    x0, x1, ax = _linear_taps(img.shape[1], width, sx, area)
    y0, y1, ay = _linear_taps(img.shape[0], height, sy, area, rows=True)
    a1 = np.clip(np.rint(ax * _COEF_SCALE), -32768, 32767).astype(np.int64)
    a0 = np.clip(np.rint((np.float32(1) - ax) * _COEF_SCALE), -32768, 32767).astype(np.int64)
    b1 = np.clip(np.rint(ay * _COEF_SCALE), -32768, 32767).astype(np.int64)
    b0 = np.clip(np.rint((np.float32(1) - ay) * _COEF_SCALE), -32768, 32767).astype(np.int64)
    src = img.astype(np.int64)
    rows0 = src[y0][:, x0] * a0[None, :, None] + src[y0][:, x1] * a1[None, :, None]
    rows1 = src[y1][:, x0] * a0[None, :, None] + src[y1][:, x1] * a1[None, :, None]
    out = (((b0[:, None, None] * (rows0 >> 4)) >> 16) + ((b1[:, None, None] * (rows1 >> 4)) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def _round_u8(x: np.ndarray) -> np.ndarray:
    """OpenCV's saturate_cast<uchar> of a float: round half to even, clamp to 0..255."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
