"""Throughput and memory of `analyze`: decode ceiling, per-detector frames/s, model ms per face.

Usage (numbers go to docs/benchmarks.md):

    .venv/bin/python benchmarks/bench_analyze.py --video ../shared/data/video/short_hamilton_clip.mp4
    .venv/bin/python benchmarks/bench_analyze.py --video ../shared/data/video/short_hamilton_clip.mp4 --long-minutes 10
    EMOREEL_PEER_PYTHON=/tmp/fervenv/bin/python make bench   # with the `fer` peer (its own venv)

For each size: emoreel's fast default, --exact, extra --detect-every intervals, the peer when given:
frames/s, real-time factor, frames with at least one face, and ratios; then each fast run's
agreement with --exact (emoreel.outputs.agreement).

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

from emoreel.analysis.run import analyze_to_dir
from emoreel.config import AnalyzeOptions
from emoreel.media.video import VideoWriter, open_source
from emoreel.model.emotion import EmotionModel


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


def frames_with_face(out: Path) -> int:
    from emoreel.results import load_results

    return len(np.unique(load_results(out).cols["frame"]))


def peer_run(peer_python: str, video: Path) -> dict:
    import json
    import subprocess

    out = subprocess.run([peer_python, str(Path(__file__).with_name("bench_peer.py")), str(video)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    from emoreel.outputs.agreement import compare

    ap = argparse.ArgumentParser()
    ap.add_argument("--video", required=True)
    ap.add_argument("--heights", default="360,720,1080")
    ap.add_argument("--long-minutes", type=float, default=0)
    ap.add_argument("--long-every", type=int, default=1)
    ap.add_argument("--peer-python", default=os.environ.get("EMOREEL_PEER_PYTHON"),
                    help="a Python with the `fer` package (or $EMOREEL_PEER_PYTHON): timed on the same inputs, as a ratio")
    ap.add_argument("--detect-every", default="5", help="also time these fast-mode detection intervals (comma list; '' = none)")
    ap.add_argument("--views", default="mirror", help="also time the fast default with these test-time views (comma list; '' = none)")
    ap.add_argument("--loops", type=int, default=4, help="inputs are the clip played this many times (steady state)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeat", type=int, default=2,
                    help="time each run this many times, interleaved, and keep the best (shared VMs vary by 10-20%%)")
    args = ap.parse_args()
    tmp = Path(tempfile.gettempdir()) / "emoreel-bench"
    tmp.mkdir(exist_ok=True)
    src = Path(args.video)
    load = os.getloadavg()[0]
    print(f"# emoreel analyze benchmark — {time.strftime('%Y-%m-%d')}, {cpu_name()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, OpenCV {cv2.__version__}")
    print(f"load average at start: {load:.2f}" + ("  (UNDER LOAD: other work was running)" if load > 0.5 else ""))
    print(f"command: {' '.join(sys.argv)}\n")
    print(f"inputs: {src.name} played {args.loops} times, rescaled; frames/s = processed frames over the run's "
          f"wall time after model loading (decode, detect, classify, track, smooth, CSV), best of {args.repeat} "
          f"interleaved runs\n")
    print("| input | run | frames/s | real-time factor | frames with a face | x --exact | x peer |")
    print("|---|---|---|---|---|---|---|")
    agreements = []
    variants = [("default", {}), ("--exact", {"exact": True})]
    variants += [(f"--detect-every {k}", {"detect_every": int(k)}) for k in args.detect_every.split(",") if k]
    variants += [(f"--views {v}", {"views": v}) for v in args.views.split(",") if v]
    for h in (int(x) for x in args.heights.split(",") if x):
        video = rescale(src, tmp / f"clip_{h}p_{args.loops}x.mp4", h, loops=args.loops)
        peer = peer_run(args.peer_python, video) if args.peer_python else None
        rates, rts = {}, {}
        for _ in range(args.repeat):  # interleaved, best of --repeat: the least disturbed run of each
            for name, opts in variants:
                out = tmp / f"out_{h}_{name.strip('-').replace(' ', '')}"
                fps, _, rt, _ = analyze_fps(video, out, device=args.device, **opts)
                if fps > rates.get(name, 0):
                    rates[name], rts[name] = fps, rt
        n = sum(1 for _ in open_source(video))
        for name, opts in variants:
            out = tmp / f"out_{h}_{name.strip('-').replace(' ', '')}"
            fps, rt = rates[name], rts[name]
            ratio_exact = f"{fps / rates['--exact']:.2f}x" if "--exact" in rates else ""
            ratio_peer = f"{fps / peer['fps']:.2f}x" if peer else ""
            print(f"| {h}p | {name} | {fps:.1f} | {rt:.2f}x | {frames_with_face(out)}/{n} | {ratio_exact} | {ratio_peer} |",
                  flush=True)  # fmt: skip
        if peer:
            print(f"| {h}p | peer `fer` (Haar) | {peer['fps']:.1f} | | {peer['frames_with_face']}/{peer['frames']} | | |")
        exact_out = tmp / f"out_{h}_exact"
        for name, _ in variants:
            if name != "--exact":
                agreements.append((h, name, compare(exact_out, tmp / f"out_{h}_{name.strip('-').replace(' ', '')}")))
        if "default" in rates and "--exact" in rates:  # the default's ratio printed once --exact is known
            print(f"| {h}p | default vs --exact | | | | **{rates['default'] / rates['--exact']:.2f}x** | |")
        for v in (x for x in args.views.split(",") if x):
            print(f"| {h}p | default ({AnalyzeOptions.views}) vs --views {v} | {rates['default'] / rates[f'--views {v}']:.2f}x | | | | |")
    print("\nagreement with --exact (rows paired by frame and box; docs/benchmarks.md):\n")
    print("| input | run | faces found | frames, same face count | same smoothed label | extract segments (±0.2 s) "
          "| segments not in --exact | new face found after (median / max frames) |")
    print("|---|---|---|---|---|---|---|---|")
    for h, name, r in agreements:
        print(f"| {h}p | {name} | {r['faces']:.1%} | {r['frames']:.1%} | {r['label']:.1%} | "
              f"{r['segments']:.1%} of {r['n_segments']} | {1 - r['segments_back']:.1%} of {r['n_segments_other']} | "
              f"{r['new_face_delay_median']:.0f} / {r['new_face_delay_max']} |")
    print("\n| emotion model | ms per face |\n|---|---|")
    for b in (1, 8, 32):
        print(f"| batch {b}, 1 thread | {model_ms(b):.3f} |", flush=True)
    if args.long_minutes:
        with open_source(src) as clip:
            loops = int(np.ceil(args.long_minutes * 60 / clip.info.duration_s))
        video = rescale(src, tmp / f"long_{loops}x_360p.mp4", 360, loops=loops)
        samples = long_run(video, tmp / "out_long", every=args.long_every)
        print(f"\nlong run ({loops} loops, every {args.long_every}, default settings): RSS by video minute")
        print("| video minute | RSS MB |\n|---|---|")
        for minute, mb in samples[:: max(1, len(samples) // 12)]:
            print(f"| {minute:.1f} | {mb:.0f} |")


if __name__ == "__main__":
    main()
