"""Labelled real-face checks: the whole pipeline (detection, gate, alignment, emotion) on real photos and
real video, clean and degraded, for one or more emotion models side by side.

The labels are ours, given by looking at each face (docs/model.md shows the crops):
- photos (../shared/data): obama.jpg happy; biden.jpg neutral; two_people.jpg both neutral;
  people/alex-lacamoire.png happy; the shipped astronaut (src/emoreel/assets) happy.
  lin-manuel-miranda.png (talking, brows up) is left out: we could not agree on a label.
- each photo again, degraded as video degrades faces: dim (x0.15 brightness, gamma 1.8), small (face
  about 45 px), blurred (sigma 2.5 px at a 110 px face), JPEG quality 10, noisy (sigma 12).
- the clip, frames 225-274 (an audience shot): four people laughing or smiling, three of them
  turned 55-65 degrees with both eyes visible; every frame, labelled happy.

    python benchmarks/real_faces.py [--model A.onnx --model B.onnx] [--views mirror jitter] [--json out.json]

Prints, per model and set: faces found, accuracy over found faces and over all, and accuracy by yaw.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

from emoreel.analysis.analyzer import Analyzer  # noqa: E402
from emoreel.analysis.evaluate_photos import evaluate_photos  # noqa: E402
from emoreel.config import AnalyzeOptions  # noqa: E402
from emoreel.faces.align import estimate_yaw  # noqa: E402
from emoreel.media.video import read_frames  # noqa: E402
from emoreel.runtime import cpu_model  # noqa: E402

PHOTOS = [  # (path, [(label, crop as fractions x0, y0, x1, y1 of the image or None)])
    (SHARED / "photos" / "obama.jpg", [("happy", None)]),
    (SHARED / "photos" / "biden.jpg", [("neutral", None)]),
    (SHARED / "photos" / "two_people.jpg", [("neutral", (0.0, 0.0, 0.5, 1.0)), ("neutral", (0.5, 0.0, 1.0, 1.0))]),
    (SHARED / "people" / "alex-lacamoire.png", [("happy", None)]),
    (ROOT / "src" / "emoreel" / "assets" / "astronaut.jpg", [("happy", None)]),
]
# the clip's audience shot: label, the face's box centre at frame 240 (x, y)
CLIP = SHARED / "video" / "short_hamilton_clip.mp4"
CLIP_FRAMES = range(225, 275)
CLIP_FACES = [("happy", (83, 99)), ("happy", (196, 131)), ("happy", (355, 92)), ("happy", (420, 132))]
# the singer's broad smiles (frames 84-96 and 162-174; his other frames are singing or talking, which we could
# not label with confidence): the largest face of the frame (None = largest)
SINGER_FACES = [(range(84, 97), [("happy", None)]), (range(162, 175), [("happy", None)])]


def degrade(img: np.ndarray, kind: str) -> np.ndarray:
    if kind == "dim":
        return np.clip(255 * (img / 255.0) ** 1.8 * 0.15, 0, 255).astype(np.uint8)
    if kind == "small":
        s = 380 / max(img.shape[:2])  # the face to about 45 px in these photos
        return cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    if kind == "blur":
        s = 700 / max(img.shape[:2])
        small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (0, 0), 2.5)
    if kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 10])
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if kind == "noise":
        rng = np.random.default_rng(0)
        return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    return img


def build_photo_sets(root: Path) -> dict[str, Path]:
    """One ``<class>/`` folder per condition: clean and each degradation."""
    sets = {}
    for kind in ("clean", "dim", "small", "blur", "jpeg", "noise"):
        d = root / kind
        for path, faces in PHOTOS:
            img = cv2.imread(str(path))
            if img is None:
                continue
            h, w = img.shape[:2]
            for k, (label, box) in enumerate(faces):
                part = img if box is None else img[int(box[1] * h) : int(box[3] * h), int(box[0] * w) : int(box[2] * w)]
                (d / label).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(d / label / f"{path.stem}-{k}.png"), degrade(part, kind))
        sets[kind] = d
    return sets


def clip_check(model: str | None, views: str = AnalyzeOptions.views, labelled_sets=None) -> dict:
    """Every labelled face of the clip, analyzed as a video is (the same Analyzer, frame by frame).

    ``labelled_sets``: ``[(frames, [(label, box centre or None for the largest face)])]``; default the audience shot.
    """
    an = Analyzer(AnalyzeOptions(model=model, threads=1, views=views))
    found = right = total = 0
    by_yaw: dict[str, list[int]] = {}
    labels = {}
    try:
        for frames, labelled in labelled_sets or [(CLIP_FRAMES, CLIP_FACES)]:
            for frame in read_frames(CLIP, frames):
                faces = an.prepare(frame, an.detect(frame))
                centres = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
                for label, centre in labelled:
                    total += 1
                    if not len(faces):
                        continue
                    if centre is None:
                        d = np.zeros(len(faces))
                        i = int(np.argmax(faces.widths * faces.heights))
                    else:
                        d = np.hypot(centres[:, 0] - centre[0], centres[:, 1] - centre[1])
                        i = int(np.argmin(d))
                    if d[i] > 35 or not faces.accepted[i] or np.isnan(faces.probs[i]).any():
                        continue
                    found += 1
                    pred = an.model.classes[int(np.argmax(faces.probs[i]))]
                    labels[pred] = labels.get(pred, 0) + 1
                    ok = int(pred == label)
                    right += ok
                    yaw = abs(estimate_yaw(faces.landmarks[i]))
                    bucket = "0-30" if yaw < 30 else "30-45" if yaw < 45 else "45-60" if yaw < 60 else "60+"
                    by_yaw.setdefault(bucket, []).append(ok)
    finally:
        an.close()
    return {"faces": total, "found": found, "accuracy_found": right / max(found, 1), "accuracy_all": right / max(total, 1),
            "predicted": labels, "by_yaw": {k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(by_yaw.items())}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="model(s) to compare (default: the shipped default)")
    ap.add_argument("--views", nargs="+", default=[AnalyzeOptions.views], help="test-time view sets to compare (AnalyzeOptions.views)")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"needs {SHARED}", file=sys.stderr)
        return 2
    print(f"CPU: {cpu_model()}")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        sets = build_photo_sets(Path(tmp))
        for model, views in [(m, v) for m in args.model or [None] for v in args.views]:
            name = f"{model or 'default'}, views {views}"
            res = out[name] = {}
            for kind, folder in sets.items():
                r = evaluate_photos(folder, model=model, options=AnalyzeOptions(model=model, views=views))
                res[kind] = {"photos": r.n_photos, "found": r.found, "accuracy_all": round(r.accuracy_all, 3),
                             "wrong": [f"{p.name}: {p.predicted or 'no face'}" for p in r.photos if not p.correct]}
            res["clip"] = clip_check(model, views)
            photo_all = [res[k] for k in sets]
            total = sum(r["photos"] for r in photo_all)
            acc = sum(r["accuracy_all"] * r["photos"] for r in photo_all) / total
            print(f"\n{name}: photos (6 faces x 6 conditions) {acc:.3f} of {total} right")
            for kind in sets:
                r = res[kind]
                print(f"  {kind:6s} found {r['found']}/{r['photos']}  right {r['accuracy_all']:.2f}  wrong: {', '.join(r['wrong']) or '-'}")
            c = res["clip"]
            print(f"  clip audience (happy): found {c['found']}/{c['faces']}, right {c['accuracy_found']:.3f} of found; "
                  f"predicted {c['predicted']}; by yaw {json.dumps(c['by_yaw'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
