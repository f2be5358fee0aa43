"""Face detectors compared on a real video: faces found per shot, candidates for false positives, speed.

Usage (numbers go to docs/detectors.md):

    .venv/bin/python benchmarks/bench_detectors.py ../shared/data/video/short_hamilton_clip.mp4 \\
        --photos '../shared/data/photos/*.jpg' --contact /tmp/detector-crops

Every frame of the video is detected at its own size ("360p" for the clip) and
upscaled to 720 lines ("720p", bilinear, done before timing). ``ms/frame`` is
``detect()`` alone (resize to ``max_side``, network, decoding, landmarks), the best
of ``--repeat`` passes over all frames, single-threaded (OpenCV 1 thread,
onnxruntime 1 intra-op thread unless a config says ``threads=N``).

A detection counts when its score is at least ``--threshold``; "frontal kept" are
those that pass analyze's frontal gate with its default options (both eyes, size,
yaw, roll), and "F frames kept" the frames of shot F with at least one of those. "not in ref" counts
detections whose centre lies in no box of the reference config (run at score 0.3)
with a size within 2x: candidates for false positives, which ``--contact`` saves
as crop sheets to look at (the reference's own detections are saved too).
Configs are ``backend:max_side[:option=value...]``, e.g. ``hog:640:upsample=1``.

``--fer-zip ZIP`` instead measures where CenterFace puts the eyes in FER2013
training images (the alignment template of the emotion model):

    .venv/bin/python benchmarks/bench_detectors.py --fer-zip ../shared/data/fer2013-train-val.zip
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime

from emoreel.config import AnalyzeOptions
from emoreel.faces.align import frontal_gate
from emoreel.faces.detect import create_detector
from emoreel.media.video import open_source
from emoreel.types import Faces

DEFAULT_CONFIGS = (
    "centerface:640", "centerface:480", "centerface:384", "centerface:320", "centerface:0",
    "haar:640", "haar:384", "hog:640", "hog:640:upsample=1",
)  # fmt: skip
DEFAULT_SHOTS = "W:0-19,P:20-81,F:82-210,A:211-274"


def parse_config(text: str) -> tuple[str, dict]:
    name, side, *opts = text.split(":")
    kw: dict = {"max_side": int(side)}
    for o in opts:
        k, v = o.split("=")
        kw[k] = float(v) if "." in v else int(v)
    return name, kw


def parse_shots(text: str) -> dict[str, range]:
    out = {}
    for part in text.split(","):
        label, span = part.split(":")
        a, b = span.split("-")
        out[label] = range(int(a), int(b) + 1)
    return out


def read_video(path: str) -> list[np.ndarray]:
    with open_source(path) as src:
        return [f.image for f in src]


def run(detector, frames: list[np.ndarray], repeat: int) -> tuple[float, list[Faces]]:
    """Best-of-``repeat`` ms per frame, and the detections of the last pass."""
    detector.detect(frames[0])  # warm-up (first-call allocations)
    best = float("inf")
    for _ in range(repeat):
        out = []
        t = time.perf_counter()
        for img in frames:
            out.append(detector.detect(img))
        best = min(best, (time.perf_counter() - t) / len(frames) * 1000)
    return best, out


def matched(box: np.ndarray, ref: Faces) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    size = np.sqrt(max(box[2] - box[0], 1) * max(box[3] - box[1], 1))
    for r in ref.boxes:
        rs = np.sqrt(max(r[2] - r[0], 1) * max(r[3] - r[1], 1))
        if r[0] <= cx <= r[2] and r[1] <= cy <= r[3] and 0.5 <= size / rs <= 2:
            return True
    return False


def contact_sheet(path: Path, frames, items, tile: int = 80, cols: int = 14, limit: int = 280) -> None:
    """Crops (frame index and score written on each) of ``items`` = [(frame, box, score, landmarks)]."""
    items = items[:limit]
    if not items:
        return
    rows = (len(items) + cols - 1) // cols
    sheet = np.zeros((rows * tile, cols * tile, 3), np.uint8)
    for n, (i, box, score, lm) in enumerate(items):
        img = frames[i]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        crop = img[max(y1, 0) : max(y2, y1 + 1), max(x1, 0) : max(x2, x1 + 1)]
        if crop.size == 0:
            continue
        sx, sy = tile / crop.shape[1], tile / crop.shape[0]
        crop = cv2.resize(crop, (tile, tile))
        for p in lm:
            if np.isfinite(p).all():
                cv2.circle(crop, (int((p[0] - max(x1, 0)) * sx), int((p[1] - max(y1, 0)) * sy)), 2, (0, 255, 0), -1)
        cv2.putText(crop, f"{i}:{score:.2f}", (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 255, 255), 1)
        r, c = divmod(n, cols)
        sheet[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = crop
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet)


def per_shot(faces: list[Faces], shots: dict[str, range]) -> str:
    """``label frames-with-a-face/faces`` per shot."""
    return " ".join(
        f"{k}{sum(1 for i in r if i < len(faces) and len(faces[i]))}/{sum(len(faces[i]) for i in r if i < len(faces))}"
        for k, r in shots.items()
    )


def fer_eye_template(zip_path: str, sample: int, size: int, pad: float, seed: int = 0) -> None:
    """Median eye positions CenterFace finds on a random sample of FER2013 training images.

    Each 48x48 grey image is upscaled to ``size`` px (bicubic) and, when ``pad`` > 0,
    centred on a canvas ``1 + 2 * pad`` times larger (edge pixels replicated) so that
    faces touching the border are still whole to the detector; positions are given
    as fractions of the original image's width and height.
    """
    import zipfile

    det = create_detector("centerface", threshold=0.5, max_side=0)
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(n for n in z.namelist() if n.startswith("fer2013/train/") and n.endswith(".jpg"))
        rng = np.random.default_rng(seed)
        names = [names[i] for i in rng.choice(len(names), min(sample, len(names)), replace=False)]
        eyes, t = [], time.perf_counter()
        for n in names:
            grey = cv2.imdecode(np.frombuffer(z.read(n), np.uint8), cv2.IMREAD_GRAYSCALE)
            img = cv2.cvtColor(cv2.resize(grey, (size, size), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
            b = int(round(pad * size))
            if b:
                img = cv2.copyMakeBorder(img, b, b, b, b, cv2.BORDER_REPLICATE)
            faces = det.detect(img)
            if not len(faces):
                continue
            lm = faces.landmarks[int(np.argmax(faces.scores)), :2] - b  # image-left eye, image-right eye
            eyes.append(lm.reshape(-1) / size)
    e = np.array(eyes).reshape(-1, 4)
    iod = np.hypot(e[:, 2] - e[:, 0], e[:, 3] - e[:, 1])
    q = lambda v: f"{np.median(v):.3f} (IQR {np.percentile(v, 25):.3f}-{np.percentile(v, 75):.3f})"  # noqa: E731
    print(f"# FER2013 eye template — {time.strftime('%Y-%m-%d')}: {Path(zip_path).name}, {len(names)} random training images "
          f"(seed {seed}), upscaled to {size} px, padded {pad:.0%} per side, CenterFace threshold 0.5, "
          f"{(time.perf_counter() - t) / max(len(names), 1) * 1000:.1f} ms/image\n")  # fmt: skip
    print(f"images with a detection: {len(e)}/{len(names)} ({len(e) / max(len(names), 1):.1%})\n")
    print("| point (fraction of width, height) | median (interquartile range) |")
    print("|---|---|")
    print(f"| image-left eye x | {q(e[:, 0])} |")
    print(f"| image-left eye y | {q(e[:, 1])} |")
    print(f"| image-right eye x | {q(e[:, 2])} |")
    print(f"| image-right eye y | {q(e[:, 3])} |")
    print(f"| inter-ocular distance / width | {q(iod)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", help="the video to compare detectors on")
    ap.add_argument("--photos", default=None, help="glob of still photos to count faces on")
    ap.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    ap.add_argument("--heights", nargs="+", type=int, default=[0, 720], help="0 = the video's own size")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--shots", default=DEFAULT_SHOTS, help="label:first-last,... frame ranges")
    ap.add_argument("--reference", default="centerface:640")
    ap.add_argument("--gate-shot", default="F", help="shot whose frames with a face kept by the frontal gate are counted")
    ap.add_argument("--contact", default=None, help="folder for crop sheets (candidates for false positives)")
    ap.add_argument("--fer-zip", default=None, help="instead: eye template of FER2013 training images in this zip")
    ap.add_argument("--fer-sample", type=int, default=2000)
    ap.add_argument("--fer-size", type=int, default=192)
    ap.add_argument("--fer-pad", type=float, default=0.0, help="border per side as a fraction (0.25 found fewer faces, same medians)")
    args = ap.parse_args()

    cv2.setNumThreads(1)
    if args.fer_zip:
        fer_eye_template(args.fer_zip, args.fer_sample, args.fer_size, args.fer_pad)
        return
    if not args.video:
        ap.error("give a video (or --fer-zip)")
    base = read_video(args.video)
    shots = parse_shots(args.shots)
    sizes = {}
    for h in args.heights:
        if h == 0 or h == base[0].shape[0]:
            sizes[f"{base[0].shape[0]}p"] = base
        else:
            w = int(round(base[0].shape[1] * h / base[0].shape[0] / 2)) * 2
            sizes[f"{h}p"] = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in base]
    own = f"{base[0].shape[0]}p"

    name, kw = parse_config(args.reference)
    ref = [f for f in run(create_detector(name, threshold=0.3, **kw), base, 1)[1]]
    photos = sorted(glob.glob(args.photos)) if args.photos else []

    try:
        load = "%.1f" % os.getloadavg()[0]
    except OSError:
        load = "?"
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.machine())
    print(f"# Face detectors on {Path(args.video).name} ({len(base)} frames) — {time.strftime('%Y-%m-%d')}")
    print(f"{cpu}, {os.cpu_count()} CPUs, load average {load} at start; Python {platform.python_version()}, "
          f"OpenCV {cv2.__version__}, onnxruntime {onnxruntime.__version__}; single-threaded; "
          f"threshold {args.threshold}; best of {args.repeat}\n")  # fmt: skip
    cols = ["config"] + [f"ms/frame {s}" for s in sizes] + [
        f"frames with a face ({own})", f"per shot frames/faces ({own})",
        *[f"per shot ({s})" for s in sizes if s != own], "both eyes",
        "frontal kept", f"{args.gate_shot} frames kept", "not in ref", "photos",
    ]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for cfg in args.configs:
        name, kw = parse_config(cfg)
        det = create_detector(name, threshold=args.threshold, **kw)
        ms, found = {}, {}
        for s, frames in sizes.items():
            ms[s], found[s] = run(det, frames, args.repeat)
        faces = found[own]
        n = sum(len(f) for f in faces)
        eyes = sum(int(np.isfinite(f.landmarks[:, :2]).all(axis=(1, 2)).sum()) for f in faces)
        o = AnalyzeOptions()
        kept = gate_frames = 0
        for i, f in enumerate(faces):
            g = frontal_gate(f[np.ones(len(f), bool)], min_face=o.min_face, max_yaw=o.max_yaw, max_roll=o.max_roll)
            kept += int(g.accepted.sum())
            gate_frames += int(i in shots[args.gate_shot] and g.accepted.any())
        odd = [(i, b, s, lm) for i, f in enumerate(faces) for b, s, lm in zip(f.boxes, f.scores, f.landmarks) if not matched(b, ref[i])]
        ph = []
        for p in photos:
            img = cv2.imread(p)
            got = det.detect(img)
            ph.append(str(len(got)))
            if args.contact:
                contact_sheet(Path(args.contact) / f"photo-{Path(p).stem}-{cfg.replace(':', '_')}.png", [img],
                              [(0, b, s, lm) for b, s, lm in zip(got.boxes, got.scores, got.landmarks)], tile=120, cols=6)  # fmt: skip
        if args.contact:
            tag = cfg.replace(":", "_")
            contact_sheet(Path(args.contact) / f"{tag}-not-in-ref.png", base, odd)
            if cfg == args.reference:
                items = [(i, b, s, lm) for i, f in enumerate(faces) for b, s, lm in zip(f.boxes, f.scores, f.landmarks)]
                contact_sheet(Path(args.contact) / f"{tag}-all.png", base, items[::2])
        row = [cfg] + [f"{ms[s]:.1f}" for s in sizes] + [
            f"{sum(1 for f in faces if len(f))}/{len(faces)}", per_shot(faces, shots),
            *[per_shot(found[s], shots) for s in sizes if s != own],
            f"{eyes}/{n}", f"{kept}/{n}", f"{gate_frames}/{len(shots[args.gate_shot])}", str(len(odd)), "+".join(ph) or "-",
        ]  # fmt: skip
        print("| " + " | ".join(row) + " |", flush=True)
        det.close()
    if photos:
        print(f"\nphotos: {', '.join(Path(p).name for p in photos)} (faces found in each)")


if __name__ == "__main__":
    main()
