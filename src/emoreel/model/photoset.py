"""Labelled photo sets with people: ``labels.csv`` (image, emotion, person) beside the photos.

A set such as ``webfaces.zip`` holds full-size photos (not face crops) of many people, several
photos each. To evaluate honestly on it, no person may be both trained on and evaluated:
:func:`person_split` divides the *people*, by one fixed rule, into ``dev`` (about
:data:`DEV_SHARE` of the people, and of each class's photos; evaluation only, never trained
on) and ``train`` (the rest). The rule depends only on the set's rows, so every machine,
every run and every future session gets the same split.

Layout read: a folder or a ``.zip`` with ``labels.csv`` at its root or one folder down, whose
``image`` column is the photo's path relative to that CSV's folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import zipfile
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DataError

log = logging.getLogger(__name__)

MAX_MEMBER_BYTES = 50_000_000
"""A photo (or labels.csv) that inflates to more than this is refused unread."""
DEV_SHARE = 0.2
"""Share of the people (and of each class's photos) held out as ``dev``."""
SPLITS = ("train", "dev")
TOLERANCE = 1.25
"""A person joins ``dev`` only while no class goes past this many times its dev target (plus one photo)."""


@dataclass(frozen=True)
class LabelledPhoto:
    """One row of ``labels.csv``: the photo's path (relative to the CSV), its label and who it shows."""

    image: str
    emotion: str  # the label as written (classes emoreel lacks, e.g. contempt, are kept here)
    person: str


def find_labels(names: list[str]) -> str | None:
    """The ``labels.csv`` among archive/folder member ``names`` (at the root or one folder down), or None."""
    hits = [n for n in names if PurePosixPath(n).name == "labels.csv" and len(PurePosixPath(n).parts) <= 2]
    return min(hits, key=len) if hits else None


class PhotoSet:
    """A labelled photo set in a folder or zip: its rows and a reader for each photo's bytes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"no such file or folder: {self.path}")
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError):
                raise DataError(f"{self.path}: not a zip file or folder") from None
            names = self._zip.namelist()
        else:
            names = [p.relative_to(self.path).as_posix() for p in self.path.glob("labels.csv")]
            names += [p.relative_to(self.path).as_posix() for p in self.path.glob("*/labels.csv")]
        labels = find_labels(names)
        if labels is None:
            self.close()
            raise DataError(f"{self.path}: no labels.csv (image, emotion, person)")
        self._base = str(PurePosixPath(labels).parent)
        try:
            self.rows = self._read_rows(labels)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def is_photo_set(path: str | Path) -> bool:
        """Whether ``path`` is a folder or zip with a ``labels.csv`` that names people."""
        try:
            ps = PhotoSet(path)
        except DataError:
            return False
        ps.close()
        return True

    def _member(self, rel: str) -> str:
        return rel if self._base in ("", ".") else f"{self._base}/{rel}"

    def read(self, image: str) -> bytes:
        """The bytes of one photo (``image`` as in labels.csv); :class:`DataError` if it cannot be read."""
        name = self._member(image)
        if ".." in PurePosixPath(image).parts or PurePosixPath(image).is_absolute():
            raise DataError(f"{self.path}: labels.csv names a path outside the set: {image!r}")
        try:
            if self._zip is not None:
                info = self._zip.getinfo(name)
                if info.file_size > MAX_MEMBER_BYTES:
                    raise DataError(f"{self.path}: {image} inflates to {info.file_size} bytes; refused")
                return self._zip.read(info)
            return (self.path / name).read_bytes()
        except (KeyError, OSError, zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise DataError(f"{self.path}: cannot read {image} ({type(e).__name__})") from None

    def _read_rows(self, labels: str) -> list[LabelledPhoto]:
        size = self._zip.getinfo(labels).file_size if self._zip is not None else (self.path / labels).stat().st_size
        if size > MAX_MEMBER_BYTES:
            raise DataError(f"{self.path}: labels.csv is {size} bytes; refused")
        raw = self._zip.read(labels) if self._zip is not None else (self.path / labels).read_bytes()
        try:
            reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
            reader.fieldnames = [f.strip().lower() for f in reader.fieldnames or []]
            fields = set(reader.fieldnames)
            if not {"image", "emotion", "person"} <= fields:
                raise DataError(f"{self.path}: labels.csv needs the columns image, emotion, person (has {', '.join(sorted(fields))})")
            rows = [LabelledPhoto((r["image"] or "").strip(), (r["emotion"] or "").strip().lower(), (r["person"] or "").strip())
                    for r in reader]  # fmt: skip
            dropped = sum(not (r.image and r.person) for r in rows)
            rows = [r for r in rows if r.image and r.person]
            if dropped:
                log.warning("%s: %d rows of labels.csv without an image or a person left out", self.path, dropped)
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{self.path}: labels.csv is not a readable CSV ({e})") from None
        if not rows:
            raise DataError(f"{self.path}: labels.csv has no rows")
        return rows

    def split(self, name: str) -> list[LabelledPhoto]:
        """The rows of split ``train`` or ``dev`` (:func:`person_split`), or all rows for ``all``."""
        if name == "all":
            return list(self.rows)
        if name not in SPLITS:
            raise DataError(f"{self.path}: no split {name!r}: a photo set with people has {', '.join(SPLITS)} (and all)")
        side = person_split(self.rows)
        return [r for r in self.rows if side[r.person] == name]

    def extract(self, rows: list[LabelledPhoto], dest: str | Path) -> Path:
        """Write ``rows``' photos to ``dest/<class>/<file name>`` (the layout of a labelled photo folder).

        Rows whose emotion is none of emoreel's classes (e.g. contempt) and photos that cannot be read are
        left out with a warning; nothing is written outside ``dest``.
        """
        from .datasets import canonical_class

        dest = Path(dest)
        used: set[str] = set()
        other: Counter = Counter()
        unreadable = 0
        for r in rows:
            cls = canonical_class(r.emotion)
            if cls is None:
                other[r.emotion] += 1
                continue
            try:
                data = self.read(r.image)
            except DataError as e:
                unreadable += 1
                log.warning("%s", e)
                continue
            r = LabelledPhoto(r.image, cls, r.person)
            name = PurePosixPath(r.image).name
            stem, suffix, k = PurePosixPath(name).stem, PurePosixPath(name).suffix, 1
            while f"{r.emotion}/{name}" in used:
                k += 1
                name = f"{stem}-{k}{suffix}"
            used.add(f"{r.emotion}/{name}")
            (dest / r.emotion).mkdir(parents=True, exist_ok=True)
            (dest / r.emotion / name).write_bytes(data)
        for emo, n in sorted(other.items()):
            log.warning("%s: %d photos labelled %r (not one of emoreel's classes) left out", self.path, n, emo)
        if unreadable:
            log.warning("%s: %d photos could not be read and were left out", self.path, unreadable)
        if not used:
            raise DataError(f"{self.path}: no readable photo of emoreel's classes among the {len(rows)} chosen")
        return dest

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> "PhotoSet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _rank(person: str) -> str:
    return hashlib.sha1(person.encode("utf-8")).hexdigest()


def person_split(rows: list[LabelledPhoto], share: float = DEV_SHARE) -> dict[str, str]:
    """``{person: "dev" | "train"}``: about ``share`` of the people and of each class's photos in ``dev``.

    The rule, fixed: people are ranked by the SHA-1 of their name. Classes are visited from the
    rarest to the commonest; within a class, people who have photos of it are taken in rank
    order into ``dev`` while that class has fewer dev photos than ``share`` of its photos, and
    only if no class would then hold more than :data:`TOLERANCE` times its target (plus one).
    Everyone not taken trains. Nobody is in both.
    """
    per: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        per[r.person][r.emotion] += 1
    totals = Counter(r.emotion for r in rows)
    target = {c: share * n for c, n in totals.items()}
    dev_count: Counter = Counter()
    side = {p: "train" for p in per}
    ranked = sorted(per, key=_rank)
    for cls in sorted(totals, key=lambda c: (totals[c], c)):
        for p in ranked:
            if dev_count[cls] >= target[cls]:
                break
            if side[p] == "dev" or not per[p][cls]:
                continue
            if all(dev_count[c] + k <= TOLERANCE * target[c] + 1 for c, k in per[p].items()):
                side[p] = "dev"
                dev_count.update(per[p])
    return side
