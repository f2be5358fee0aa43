"""Detector comparison on real footage: faces found per shot, frontal faces kept, ms per frame.

    .venv/bin/python benchmarks/bench_detectors.py ../shared/data/video/short_hamilton_clip.mp4 ../shared/data/photos

Shots of short_hamilton_clip.mp4: W wide (frames 0-19), P pianist close-up in profile (20-81),
F singer facing the camera (82-210), A audience (211-274). Times are the median of 3 passes over
all frames, single-threaded detector (1 onnxruntime thread), at 360p and at a 720p upscale.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2

from emoreel.align import frontal_gate
from emoreel.detect import create_detector
from emoreel.video import open_source

SHOTS = {"W": (0, 19), "P": (20, 81), "F": (82, 210), "A": (211, 274)}
CONFIGS = [
    ("centerface", {"max_side": 640}),
    ("centerface", {"max_side": 480}),
    ("centerface", {"max_side": 384}),
    ("centerface", {"max_side": 320}),
    ("haar", {"max_side": 640}),
    ("haar", {"max_side": 384}),
]


def timed(det, frames, reps=3) -> float:
    runs = []
    for _ in range(reps):
        t = time.perf_counter()
        for f in frames:
            det.detect(f)
        runs.append((time.perf_counter() - t) / len(frames) * 1000)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("photos", nargs="?")
    args = ap.parse_args()
    with open_source(args.video) as s:
        frames = [f.image for f in s]
    big = [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_LINEAR) for f in frames]
    print(f"command: {' '.join(sys.argv)}\n")
    print("| detector | max_side | ms/frame 360p | ms/frame 720p | frames with a face W/P/F/A | faces | frontal ≥ 40 px | singer frames kept (of 129) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, kw in CONFIGS:
        det = create_detector(name, **kw)
        found = [det.detect(f) for f in frames]
        per_shot = "/".join(str(sum(len(found[i]) > 0 for i in range(a, b + 1))) for a, b in SHOTS.values())
        kept = singer = 0
        for i, fc in enumerate(found):
            frontal_gate(fc, min_face=40)
            kept += int(fc.accepted.sum())
            singer += int(82 <= i <= 210 and fc.accepted.any())
        ms360, ms720 = timed(det, frames), timed(det, big, reps=1)
        print(f"| {name} | {kw['max_side']} | {ms360:.1f} | {ms720:.1f} | {per_shot} | {sum(map(len, found))} | {kept} | {singer} |", flush=True)
    if args.photos:
        print("\n| photo | " + " | ".join(f"{n} {kw['max_side']}" for n, kw in CONFIGS) + " |")
        print("|---|" + "---|" * len(CONFIGS))
        dets = [create_detector(n, **kw) for n, kw in CONFIGS]
        for p in sorted(Path(args.photos).glob("*.jpg")):
            img = cv2.imread(str(p))
            print(f"| {p.name} ({img.shape[1]}x{img.shape[0]}) | " + " | ".join(str(len(d.detect(img))) for d in dets) + " |")


if __name__ == "__main__":
    main()
