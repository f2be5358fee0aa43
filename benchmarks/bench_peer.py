"""Time the peer `fer` package's per-frame video analysis on a clip (run it with a Python that has fer).

    /path/to/fer-venv/bin/python benchmarks/bench_peer.py ../shared/data/video/short_hamilton_clip.mp4

Prints one JSON line: frames, seconds, frames/s, frames with a face. fer is not an emoreel dependency:
install it in its own venv (pip install tensorflow-cpu "opencv-python-headless<5" pillow pandas requests tqdm;
pip install --no-deps fer). Uses fer's Haar-cascade detector (its default, mtcnn=False).
"""

from __future__ import annotations

import json
import sys
import time

import cv2


def main() -> None:
    from fer.fer import FER  # `from fer import FER` pulls optional video deps

    path = sys.argv[1]
    det = FER(mtcnn=False)
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    det.detect_emotions(frames[0])  # warm-up (graph building)
    t = time.perf_counter()
    with_face = sum(1 for img in frames if det.detect_emotions(img))
    dt = time.perf_counter() - t
    print(json.dumps({"frames": len(frames), "seconds": round(dt, 2), "fps": round(len(frames) / dt, 1), "frames_with_face": with_face}))


if __name__ == "__main__":
    main()
