"""Throughput and memory of `analyze`: decode ceiling, per-detector frames/s, model ms per face.

Usage (numbers go to docs/benchmarks.md):

    .venv/bin/python benchmarks/bench_analyze.py --video ../shared/data/video/short_hamilton_clip.mp4
    .venv/bin/python benchmarks/bench_analyze.py --video ../shared/data/video/short_hamilton_clip.mp4 --long-minutes 10

Inputs at 360p/720p/1080p are made by rescaling the clip (written once to a temp folder).
Each analyze run writes a real results folder; frames/s counts processed frames over wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from emoreel.config import AnalyzeOptions
from emoreel.emotion import EmotionModel
from emoreel.pipeline import analyze_to_dir
from emoreel.video import VideoWriter, open_source


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rescale(src: Path, dst: Path, height: int, loops: int = 1) -> Path:
    if dst.exists():
        return dst
    with open_source(src) as s:
        frames = [f.image for f in s]
        fps = s.info.fps
    w = int(round(frames[0].shape[1] * height / frames[0].shape[0] / 2)) * 2
    with VideoWriter(dst, fps, (w, height)) as out:
        for _ in range(loops):
            for img in frames:
                out.write(cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA if height < img.shape[0] else cv2.INTER_LINEAR))
    return dst


def decode_fps(path: Path) -> float:
    t = time.perf_counter()
    with open_source(path) as s:
        n = sum(1 for _ in s)
    return n / (time.perf_counter() - t)


def analyze_fps(path: Path, out: Path, **opts) -> tuple[float, float, float, int]:
    """(frames/s while processing, frames/s including model loading, real-time factor, faces) for one full run."""
    t = time.perf_counter()
    s = analyze_to_dir(path, out, AnalyzeOptions(**opts), force=True)
    dt = time.perf_counter() - t
    with open_source(path) as src:
        fps = float(src.info.fps)
    rate = s.frames / s.seconds
    return rate, s.frames / dt, rate / fps * opts.get("every", 1), s.faces


def model_ms(batch: int, reps: int = 200) -> float:
    m = EmotionModel(threads=1)
    crops = [np.random.default_rng(0).integers(0, 255, (48, 48), np.uint8) for _ in range(batch)]
    for _ in range(10):
        m.predict(crops)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        m.predict(crops)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000 / batch


def long_run(path: Path, out: Path, **opts) -> list[tuple[float, float]]:
    """Analyze a looped video, sampling RSS; returns (video minute, RSS MB) pairs."""
    samples: list[tuple[float, float]] = []
    with open_source(path) as src:
        fps = float(src.info.fps)

    def progress(done, total):
        if done % 300 == 0:
            samples.append((done * opts.get("every", 1) / fps / 60, rss_mb()))

    analyze_to_dir(path, out, AnalyzeOptions(**opts), force=True, progress=progress)
    return samples


def cpu_name() -> str:
    """The CPU model and the vector extensions that decide onnxruntime's speed (AVX-512, VNNI, AMX)."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), platform.machine())
    flags = set(next((ln.split(":", 1)[1].split() for ln in info if ln.startswith("flags")), []))
    ext = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{name} ({', '.join(ext) or 'no AVX2'})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", required=True)
    ap.add_argument("--detectors", default="centerface,haar")
    ap.add_argument("--heights", default="360,720,1080")
    ap.add_argument("--long-minutes", type=float, default=0)
    ap.add_argument("--long-every", type=int, default=1)
    ap.add_argument("--peer-python", help="a Python with the `fer` package: time it on the same clip, as a ratio")
    ap.add_argument("--detect-every", type=int, default=5, help="also time --detect-every K (reported separately)")
    ap.add_argument("--loops", type=int, default=4, help="inputs are the clip played this many times (steady state)")
    args = ap.parse_args()
    tmp = Path(tempfile.gettempdir()) / "emoreel-bench"
    tmp.mkdir(exist_ok=True)
    src = Path(args.video)
    print(f"# emoreel analyze benchmark — {time.strftime('%Y-%m-%d')}, {cpu_name()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, OpenCV {cv2.__version__}")
    print(f"command: {' '.join(sys.argv)}\n")
    print(f"inputs: {src.name} played {args.loops} times, rescaled\n")
    print("| input | decode only (frames/s) | detector | analyze (frames/s) | with start-up (frames/s) | real-time factor | faces |")
    print("|---|---|---|---|---|---|---|")
    for h in (int(x) for x in args.heights.split(",")):
        video = rescale(src, tmp / f"clip_{h}p_{args.loops}x.mp4", h, loops=args.loops)
        dec = decode_fps(video)
        for det in args.detectors.split(","):
            fps, wall, rt, faces = analyze_fps(video, tmp / f"out_{h}_{det}", detector=det)
            print(f"| {h}p | {dec:.0f} | {det} | {fps:.1f} | {wall:.1f} | {rt:.2f}x | {faces} |", flush=True)
    if args.detect_every > 1:
        print(f"\nwith --detect-every {args.detect_every} (detector on every {args.detect_every}th frame, tracks in between; changes results):\n")
        print("| input | detector | analyze (frames/s) | real-time factor | faces |\n|---|---|---|---|---|")
        for h in (int(x) for x in args.heights.split(",")):
            video = tmp / f"clip_{h}p_{args.loops}x.mp4"
            fps, _, rt, faces = analyze_fps(video, tmp / f"out_{h}_k", detect_every=args.detect_every)
            print(f"| {h}p | centerface | {fps:.1f} | {rt:.2f}x | {faces} |", flush=True)
    if args.peer_python:
        import json
        import subprocess

        peer = json.loads(subprocess.run([args.peer_python, str(Path(__file__).with_name("bench_peer.py")), str(src)],
                                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])  # fmt: skip
        # the peer is timed after its warm-up on frames decoded beforehand; emoreel from its first frame, decode included
        ours_fps, _, _, _ = analyze_fps(src, tmp / "out_peer_cmp")
        print(f"\npeer `fer` (Haar + its mini-Xception, per-frame API) on {src.name}: {peer['fps']} frames/s, "
              f"faces in {peer['frames_with_face']}/{peer['frames']} frames; emoreel (defaults) {ours_fps:.1f} frames/s: "
              f"**{ours_fps / peer['fps']:.2f}x** the peer")
    print("\n| emotion model | ms per face |\n|---|---|")
    for b in (1, 8, 32):
        print(f"| batch {b}, 1 thread | {model_ms(b):.3f} |", flush=True)
    if args.long_minutes:
        with open_source(src) as clip:
            loops = int(np.ceil(args.long_minutes * 60 / clip.info.duration_s))
        video = rescale(src, tmp / f"long_{loops}x_360p.mp4", 360, loops=loops)
        samples = long_run(video, tmp / "out_long", every=args.long_every)
        print(f"\nlong run ({loops} loops, every {args.long_every}): RSS by video minute")
        print("| video minute | RSS MB |\n|---|---|")
        for minute, mb in samples[:: max(1, len(samples) // 12)]:
            print(f"| {minute:.1f} | {mb:.0f} |")


if __name__ == "__main__":
    main()
