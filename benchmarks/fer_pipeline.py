"""FER2013 val through the analyze path: detection, gate, 5-point alignment, emotion — and variants of it.

Each val face (48x48 grey) is upscaled to ``--size`` px (bicubic) as a stand-in for a photo, CenterFace
finds it (the highest-scoring face; its landmarks are cached in ``--cache``), the frontal gate is applied as
at run time, and the face is aligned and classified as ``analyze`` does for photos; a face not found at the
detector's threshold gets analyze's second look at photos (``--photo-threshold``, 0.5 = off). ``--views`` names the
test-time views to compare (``emoreel.model.emotion.VIEWS``), ``--degrade`` runs the same on a degraded copy of
val (``emoreel.model.degrade``, the faces degraded at 48 px before upscaling, as ``evaluate --degrade`` does).

    python benchmarks/fer_pipeline.py --data ../shared/data/fer2013-train-val.zip [--views single mirror jitter] \
        [--size 192] [--degrade 0] [--model emoreel-fer]

Prints accuracy over the faces found and kept (and over all val faces), per view set, with the CPU model.
Val is the official PublicTest split: the only split used for choices in this project.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from emoreel.analysis.analyzer import Analyzer  # noqa: E402
from emoreel.config import AnalyzeOptions  # noqa: E402
from emoreel.faces.align import align_faces, frontal_gate  # noqa: E402
from emoreel.faces.detect import create_detector  # noqa: E402
from emoreel.model.datasets import load_dataset  # noqa: E402
from emoreel.model.emotion import EmotionModel  # noqa: E402
from emoreel.runtime import cpu_model  # noqa: E402
from emoreel.types import Faces, Frame  # noqa: E402


def upscale(grey: np.ndarray, size: int) -> np.ndarray:
    return cv2.cvtColor(cv2.resize(grey, (size, size), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)


def detect_all(images: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box, landmarks and score of the best face per image (NaN where none), at ``size`` px."""
    det = create_detector("centerface", threshold=0.5, max_side=0, min_face=16)
    n = len(images)
    boxes, lms, scores = np.full((n, 4), np.nan), np.full((n, 5, 2), np.nan), np.zeros(n)
    t = time.perf_counter()
    for i, g in enumerate(images):
        f = det.detect(upscale(g, size))
        if len(f):
            j = int(np.argmax(f.scores))
            boxes[i], lms[i], scores[i] = f.boxes[j], f.landmarks[j], f.scores[j]
        if (i + 1) % 500 == 0:
            print(f"  detected {i + 1}/{n} ({(i + 1) / (time.perf_counter() - t):.0f} faces/s)", file=sys.stderr)
    return boxes, lms, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/fer2013-train-val.zip"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--views", nargs="+", default=["single", "mirror", "jitter"], help="names from emoreel.model.emotion.VIEWS")
    ap.add_argument("--degrade", type=int, default=None, help="seed: run on a degraded copy of val")
    ap.add_argument("--cache", default="/tmp/emoreel-fer-pipeline")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--photo-threshold", type=float, default=AnalyzeOptions.photo_threshold,
                    help="analyze's second look at photos without a face (0.5 = off)")
    args = ap.parse_args()
    cv2.setNumThreads(1)

    data = load_dataset(args.data, "val")
    images, labels = data.images, data.labels
    if args.degrade is not None:
        from emoreel.model.degrade import degraded_copy

        images = degraded_copy(images, seed=args.degrade)
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    cache = Path(f"{args.cache}-{args.size}-{'clean' if args.degrade is None else f'deg{args.degrade}'}-{len(images)}.npz")
    if cache.is_file():
        z = np.load(cache)
        boxes, lms, scores = z["boxes"], z["lms"], z["scores"]
    else:
        boxes, lms, scores = detect_all(images, args.size)
        np.savez(cache, boxes=boxes, lms=lms, scores=scores)

    model = EmotionModel(args.model, threads=2)
    found = ~np.isnan(boxes[:, 0])
    second = np.zeros(len(images), bool)
    if args.photo_threshold < 0.5:  # analyze's second look at photos without a kept face (Analyzer.second_look)
        an = Analyzer(AnalyzeOptions(photo_threshold=args.photo_threshold, min_face=16, threads=1), model=model)
        an.per_image = True
        for i in np.flatnonzero(~found):
            img = upscale(images[i], args.size)
            f = an.second_look(Frame(int(i), 0.0, img), Faces.empty(), an.detector)
            if len(f):
                boxes[i], lms[i], scores[i], second[i] = f.boxes[0], f.landmarks[0], f.scores[0], True
        an.close()
        found = ~np.isnan(boxes[:, 0])
    kept = np.zeros(len(images), bool)
    crops, keep_idx = [], []
    for i in np.flatnonzero(found):
        f = Faces(boxes=boxes[i : i + 1], scores=scores[i : i + 1], landmarks=lms[i : i + 1])
        frontal_gate(f, min_face=16)
        if not f.accepted[0]:
            continue
        c, _ = align_faces(upscale(images[i], args.size), f, model.spec)
        crops.append(c[0])
        keep_idx.append(i)
        kept[i] = True
    keep_idx = np.array(keep_idx)
    print(f"# FER2013 val through detection — {time.strftime('%Y-%m-%d')}, CPU {cpu_model()}, model {model.name}, "
          f"{'degraded (seed %d), ' % args.degrade if args.degrade is not None else ''}faces upscaled to {args.size} px")
    print(f"faces: {len(images)}, found {found.sum()} ({second.sum()} of them by the second look at photo threshold "
          f"{args.photo_threshold}), kept by the gate {kept.sum()}\n")
    min_prob = AnalyzeOptions.min_prob
    print(f"| views | accuracy (kept) | accuracy (all val; missed = wrong) | right when the top probability >= {min_prob} (share of faces) |")
    print("|---|---|---|---|")
    for v in args.views:
        p = model.predict(crops, v)
        right = p.argmax(1) == labels[keep_idx]
        sure = p.max(1) >= min_prob
        print(f"| {v} | {right.mean():.2%} | {right.sum() / len(images):.2%} | {right[sure].mean():.1%} ({sure.mean():.1%}) |")


if __name__ == "__main__":
    main()
