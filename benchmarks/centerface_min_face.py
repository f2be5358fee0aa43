"""The smallest face CenterFace finds: the astronaut's head pasted at known sizes on plain backgrounds.

    .venv/bin/python benchmarks/centerface_min_face.py

Prints, per face size (box width in the detector's input), how many of 20 placements
were found and passed the frontal gate. emoreel's CenterFaceDetector.smallest_face_px
(how far detection may shrink a --min-face face) comes from this table.
"""

from __future__ import annotations

import cv2
import numpy as np

from emoreel.faces.align import frontal_gate
from emoreel.faces.detect import CenterFaceDetector
from emoreel.media.sample import astronaut


def main() -> None:
    det = CenterFaceDetector(max_side=0)
    head = astronaut()[10:330, 60:380]
    padded = cv2.copyMakeBorder(head, 100, 100, 100, 100, cv2.BORDER_CONSTANT, value=(120, 110, 100))
    ref = det.detect(padded)
    ratio = (ref.boxes[0, 2] - ref.boxes[0, 0]) / head.shape[1]  # face box width / head crop width
    print("| face width (px, detector input) | found (of 20) | frontal (of 20) |\n|---|---|---|")
    for face in (8, 10, 12, 14, 16, 18, 20, 24, 32):
        side = int(round(face / ratio))
        found = frontal = 0
        for k in range(20):
            rng = np.random.default_rng(k)
            canvas = np.full((224, 384, 3), rng.integers(60, 200, 3), np.uint8)
            h = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
            h = h[:, ::-1] if k % 2 else h
            x, y = rng.integers(0, 384 - side), rng.integers(0, 224 - side)
            canvas[y : y + side, x : x + side] = h
            faces = det.detect(canvas)
            found += len(faces) > 0
            if len(faces):
                frontal_gate(faces, min_face=0)
                frontal += bool(faces.accepted.any())
        print(f"| {face} | {found} | {frontal} |")


if __name__ == "__main__":
    main()
