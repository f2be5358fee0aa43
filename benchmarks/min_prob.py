"""Derive the default ``--min-prob``: the top probability above which the model is right at least TARGET
of the time (see docs/model.md, "Confident labels"), on FER2013 val and on real faces (the webfaces dev
people, cropped as analyze crops them: a pack from ``emoreel train --data webfaces.zip --pack``).
Re-run it after replacing the model.

    .venv/bin/python benchmarks/min_prob.py [--data ../shared/data/fer2013-train-val.zip --split val] [--model M.onnx]
        [--target 0.8] [--views jitter]
    .venv/bin/python benchmarks/min_prob.py --data runs/webfaces.npz --split dev
"""

from __future__ import annotations

import argparse

import numpy as np

from emoreel.config import AnalyzeOptions
from emoreel.model.datasets import load_dataset
from emoreel.model.emotion import EmotionModel
from emoreel.outputs.decode import confidence_threshold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/fer2013-train-val.zip")
    ap.add_argument("--split", default="val", help="split of --data (val for FER2013, dev for a webfaces pack)")
    ap.add_argument("--model", default=None, help="ONNX model (default: the shipped one)")
    ap.add_argument("--target", type=float, default=0.8, help="accuracy wanted among the labelled faces")
    ap.add_argument("--views", default=AnalyzeOptions.views, choices=("single", "mirror", "jitter"),
                    help="test-time views, as analyze runs them (default: analyze's)")
    a = ap.parse_args()
    val = load_dataset(a.data, a.split)
    model = EmotionModel(a.model, threads=1)
    probs = model.predict(list(val.images), a.views)
    y = val.labels
    top, right = probs.max(axis=1), probs.argmax(axis=1) == y
    print(f"model {model.name}, {len(y)} faces of {val.source}, accuracy {right.mean():.3f} ({a.views} views)\n")
    print("| min top prob | faces kept | accuracy of kept | accuracy of faces in [t, t+0.1) |\n|---|---|---|---|")
    for t in np.arange(0.2, 0.95, 0.05):
        kept, band = top >= t, (top >= t) & (top < t + 0.1)
        print(f"| {t:.2f} | {kept.mean():.1%} | {right[kept].mean():.1%} | {right[band].mean():.1%} |")
    for target in sorted({0.75, 0.8, a.target}):
        t, acc, share = confidence_threshold(probs, y, target)
        print(f"\ntarget {target:.0%}: min_prob {t:.3f} keeps {share:.1%} of faces at {acc:.1%} accuracy")


if __name__ == "__main__":
    main()
