"""Still images as frames: listing an image folder or glob (naturally sorted, names relative to
its root), reading one (any file name; :class:`ImageTooLarge` above :data:`MAX_IMAGE_PIXELS`), an
image's size from its header alone, and checking that a folder still holds the images analysed.
"""

from __future__ import annotations

import glob as _glob
import logging
import os
import re
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_IMAGE_PIXELS = 150_000_000  # larger photos (a 20000x20000 PNG needs 1.2 GB decoded) are skipped, not read


def encodable(path: str) -> bool:
    """Whether OpenCV can be given ``path`` (a name with bytes that are not UTF-8 crashes it)."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) from an image file's header (PNG, JPEG, BMP, WebP, GIF, TIFF) without decoding it; None if unknown."""
    try:
        with open(path, "rb") as fh:
            return _header_size(fh)
    except OSError:
        return None


def image_size_of(data: bytes) -> tuple[int, int] | None:
    """:func:`image_size` of an image held in memory (a zip member, say), before it is decoded."""
    import io

    try:
        return _header_size(io.BytesIO(data))
    except OSError:
        return None


def too_many_pixels(size: tuple[int, int] | None) -> bool:
    return size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS


def _header_size(fh) -> tuple[int, int] | None:
    import struct

    try:
        head = fh.read(32)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head[:2] == b"BM" and len(head) >= 26:
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", head[6:10])
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            fh.seek(12)
            chunk = fh.read(30)
            if chunk[:4] == b"VP8X":
                return 1 + int.from_bytes(chunk[12:15], "little"), 1 + int.from_bytes(chunk[15:18], "little")
            if chunk[:4] == b"VP8L":
                b = int.from_bytes(chunk[9:13], "little")
                return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
            if chunk[:4] == b"VP8 ":
                w, h = struct.unpack("<HH", chunk[14:18])
                return w & 0x3FFF, h & 0x3FFF
            return None
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF / BigTIFF: the first IFD
            return _tiff_size(fh, head)
        if head[:2] == b"\xff\xd8":  # JPEG: walk the markers to the frame header
            fh.seek(2)
            while True:
                m = fh.read(2)
                skipped = 0
                while len(m) == 2 and m[0] != 0xFF:  # stray bytes before a marker: the decoder skips them, so do we
                    skipped += 1
                    if skipped > 1 << 20:
                        return None
                    m = m[1:] + fh.read(1)
                while len(m) == 2 and m[0] == 0xFF and m[1] == 0xFF:
                    m = m[1:] + fh.read(1)
                if len(m) < 2:
                    return None
                if m[1] in (0xD8, 0x01, 0x00) or 0xD0 <= m[1] <= 0xD7:
                    continue
                n = int.from_bytes(fh.read(2), "big")
                if 0xC0 <= m[1] <= 0xCF and m[1] not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">xHH", fh.read(5))
                    return w, h
                if n < 2:
                    return None
                fh.seek(n - 2, os.SEEK_CUR)
    except (OSError, struct.error):
        return None
    return None


def _tiff_size(fh, head: bytes) -> tuple[int, int] | None:
    """(width, height): tags 256/257 of a TIFF's (or BigTIFF's) first image file directory."""
    import struct

    e = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    if big:
        (ifd,) = struct.unpack(e + "Q", head[8:16])
        count_fmt, entry_fmt, entry_len = "Q", "HHQ8s", 20
    else:
        (ifd,) = struct.unpack(e + "I", head[4:8])
        count_fmt, entry_fmt, entry_len = "H", "HHI4s", 12
    fh.seek(ifd)
    (n,) = struct.unpack(e + count_fmt, fh.read(struct.calcsize(count_fmt)))
    found: dict[int, int] = {}
    for _ in range(min(n, 4096)):
        tag, typ, _count, value = struct.unpack(e + entry_fmt, fh.read(entry_len))
        if tag in (256, 257):
            fmt = {3: "H", 4: "I", 16: "Q"}.get(typ)  # SHORT, LONG, LONG8
            if fmt is None:
                return None
            found[tag] = struct.unpack(e + fmt, value[: struct.calcsize(fmt)])[0]
            if len(found) == 2:
                return found[256], found[257]
    return None


class ImageTooLarge(InputError):
    """An image above :data:`MAX_IMAGE_PIXELS`."""


def imread(path: str) -> np.ndarray | None:
    """A BGR image, None if unreadable; :class:`ImageTooLarge` (naming the file) above :data:`MAX_IMAGE_PIXELS`."""
    size = image_size(path)
    if too_many_pixels(size):
        raise ImageTooLarge(f"{path} is {size[0]}x{size[1]} pixels, more than emoreel reads "
                            f"({MAX_IMAGE_PIXELS // 1_000_000} megapixels); skipped")  # fmt: skip
    try:
        data = np.fromfile(path, np.uint8)  # any file name, also one that is not UTF-8
    except OSError:
        return None
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except MemoryError:  # a header this reader could not size asked for more memory than there is
        raise ImageTooLarge(f"{path} needs more memory to decode than there is; skipped") from None
    except cv2.error:
        return None
    if img is not None and img.shape[0] * img.shape[1] > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(f"{path} is {img.shape[1]}x{img.shape[0]} pixels, more than emoreel reads; skipped")
    return img


def natural_key(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def list_images(source: str) -> list[str] | None:
    """Image paths of a folder, a glob pattern or one image file, naturally sorted; None if ``source`` is none of them."""
    p = Path(source)
    if p.is_dir():
        files = [str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
        gifs = sorted(f.name for f in p.iterdir() if f.suffix.lower() == ".gif")
        if gifs:  # said, not silently ignored
            log.warning("%d GIF file(s) in %s are left out, e.g. %r: photos are read from %s files (convert an animated "
                        "GIF to a video to analyse it)", len(gifs), source, gifs[0],
                        "/".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES)))  # fmt: skip
    elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:  # one photo is a photo, not a one-frame video
        files = [source]
    elif any(ch in source for ch in "*?["):
        files = [f for f in _glob.glob(source) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        special = [f for f in files if not Path(f).is_file()]
        if special:  # a FIFO would block the reader forever; folders named like photos are not photos
            log.warning("%d match(es) that are not regular files are left out, e.g. %r", len(special), special[0])
            files = [f for f in files if Path(f).is_file()]
    else:
        return None
    bad = [f for f in files if not encodable(f)]
    if bad:  # names that are not UTF-8 cannot go into results.csv: left out, the same way every time
        log.warning("%d image(s) with names that are not UTF-8 are left out, e.g. %r", len(bad), bad[0])
        files = [f for f in files if encodable(f)]
    return sorted(files, key=natural_key)


def image_root(source: str) -> Path:
    """The folder image names are relative to: the folder itself, or a glob's fixed leading part."""
    p = Path(source)
    if p.is_dir():
        return p
    if p.is_file():  # one image: its folder
        return p.parent
    fixed = []
    for part in p.parts:
        if any(ch in part for ch in "*?["):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def relative_name(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


def check_image_names(path: str | Path, names: Mapping[int, str]) -> None:
    """Refuse an image folder/glob that changed since analyze: image ``i`` must still be ``names[i]``.

    Raises :class:`~emoreel.errors.InputError` naming the first difference. Empty names
    (results written before the ``source`` column) are not checked.
    """
    images = list_images(str(path))
    if images is None:
        raise InputError(f"{path} is not an image folder or glob")
    root = image_root(str(path))
    for i in sorted(names):
        want = names[i]
        if not want:
            continue
        have = relative_name(images[i], root) if 0 <= i < len(images) else None
        if have != want:
            now = f"is now {have}" if have else "is missing"
            raise InputError(f"the images in {path} changed since analyze: image {i} ({want}) {now}; "
                             "re-run analyze on the folder")  # fmt: skip


class ArraySource:
    """NumPy images in memory (BGR ``uint8``, ``(H, W, 3)`` or grey ``(H, W)``) as an image source: each its own
    moment, like a folder of photos. Named ``image 0``, ``image 1``... in the ``source`` column."""

    def __init__(self, images):
        from fractions import Fraction

        from ..types import VideoInfo

        arrays = [images] if isinstance(images, np.ndarray) else list(images)
        if not arrays:
            raise InputError("no images given")
        for k, a in enumerate(arrays):
            if not isinstance(a, np.ndarray):
                raise InputError(f"image {k} is a {type(a).__name__}, not a NumPy array (give paths as str or Path)")
            if a.dtype != np.uint8 or not (a.ndim == 2 or a.ndim == 3 and a.shape[2] in (3, 4)) or min(a.shape[:2]) < 1:
                raise InputError(f"image {k}: expected a uint8 BGR image (H, W, 3), (H, W, 4) or grey (H, W); "
                                 f"got {a.dtype} {a.shape}")  # fmt: skip
            if a.shape[0] * a.shape[1] > MAX_IMAGE_PIXELS:
                raise InputError(f"image {k} has {a.shape[0] * a.shape[1]} pixels (at most {MAX_IMAGE_PIXELS})")
        self._arrays = arrays
        self.name = ""
        self.skipped_images: list[str] = []
        self.truncated = False
        h, w = arrays[0].shape[:2]
        self.info = VideoInfo("<arrays>", "images", int(w), int(h), Fraction(1), len(arrays))

    @property
    def image_names(self) -> list[str]:
        return [f"image {k}" for k in range(len(self._arrays))]

    def __iter__(self):
        from ..types import Frame

        for k, a in enumerate(self._arrays):
            img = a if a.ndim == 3 and a.shape[2] == 3 else cv2.cvtColor(a, cv2.COLOR_GRAY2BGR if a.ndim == 2 else cv2.COLOR_BGRA2BGR)
            yield Frame(k, float(k), np.ascontiguousarray(img), f"image {k}")

    def close(self) -> None:
        pass

    def __enter__(self) -> "ArraySource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
