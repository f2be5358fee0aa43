"""Batch throughput and split agreement (docs/benchmarks.md, "Batch").

    .venv/bin/python benchmarks/bench_batch.py [--copies 8] [--loop-seconds 180] [--frames 90] [--no-ray]

1. ``--copies`` copies of the example clip (or ../shared/data/video/short_hamilton_clip.mp4 with --hamilton):
   wall time of ``emoreel batch`` with the local engine at 1 and 2 workers and with Ray on this machine,
   and Ray's overhead per task (Ray wall time minus local-2-workers wall time, per video).
2. The clip looped to ``--loop-seconds``: ``--split 2`` against one sequential run: speed-up and agreement
   (share of rows with the same emotion_smooth, same track after stitching, same track id).
Prints a Markdown table; the CPU model comes from /proc/cpuinfo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from emoreel.runtime import cpu_model

ROOT = Path(__file__).resolve().parents[1]
EMOREEL = [sys.executable, "-m", "emoreel"]


def loop_video(src: Path, dst: Path, seconds: float) -> Path:
    """``src`` repeated until ``seconds`` long (frames re-encoded by emoreel's writer)."""
    from emoreel.media.video import VideoWriter, exact_fps

    cap = cv2.VideoCapture(str(src))
    fps = exact_fps(cap.get(cv2.CAP_PROP_FPS))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    n = int(seconds * fps)
    h, w = frames[0].shape[:2]
    with VideoWriter(dst, fps, (w, h)) as out:
        for i in range(n):
            k = i % (2 * len(frames) - 2)  # forwards then backwards: no jump at the loop point
            out.write(frames[k if k < len(frames) else 2 * len(frames) - 2 - k])
    return dst


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--frames", type=int, default=90, help="frames of the built-in example clip")
    ap.add_argument("--loop-seconds", type=float, default=180)
    ap.add_argument("--hamilton", action="store_true", help="use ../shared/data/video/short_hamilton_clip.mp4")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    a = ap.parse_args()
    from emoreel.media.sample import make_example_video
    from emoreel.analysis.stitch import agreement

    work = Path(a.keep or tempfile.mkdtemp(prefix="emoreel-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    clip = ROOT.parent / "shared/data/video/short_hamilton_clip.mp4" if a.hamilton else make_example_video(work / "example.mp4", frames=a.frames)
    vids = work / "videos"
    vids.mkdir(exist_ok=True)
    for i in range(a.copies):
        shutil.copy(clip, vids / f"copy{i}.mp4")
    rows = []
    runs = [("local, 1 worker", ["--workers", "1"]), ("local, 2 workers", ["--workers", "2"])]
    if not a.no_ray:
        runs.append(("ray (local instance, started by the command)", ["--engine", "ray"]))
    for name, extra in runs:
        out = work / ("out-" + name.split(",")[0].split(" ")[0] + "-" + "".join(c for c in name if c.isdigit()))
        shutil.rmtree(out, ignore_errors=True)
        rows.append((name, timed([*EMOREEL, "batch", str(vids), "-o", str(out), "-q", *extra])))
    long = loop_video(clip, work / "looped.mp4", a.loop_seconds)
    seq, spl = work / "seq", work / "split"
    for d in (seq, spl):
        shutil.rmtree(d, ignore_errors=True)
    t_seq = timed([*EMOREEL, "batch", str(long), "-o", str(seq), "-q", "--workers", "1"])
    t_split = timed([*EMOREEL, "batch", str(long), "-o", str(spl), "-q", "--workers", "2", "--split", "2"])
    folder = next(p for p in seq.iterdir() if p.is_dir())
    ag = agreement(folder, spl / folder.name)
    load = os.getloadavg()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average before/after {load[0]:.1f}")
    print(f"clip: {clip.name} x {a.copies}; looped: {a.loop_seconds:g} s\n")
    print("| run | wall s | s per video |\n|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t:.1f} | {t / a.copies:.2f} |")
    if len(rows) == 3:
        print(f"\nRay overhead per task vs local 2 workers: {(rows[2][1] - rows[1][1]) / a.copies:+.2f} s")
    print(f"\n| looped clip | wall s |\n|---|---|\n| sequential (1 worker) | {t_seq:.1f} |\n| --split 2 (2 workers) | {t_split:.1f} |")
    print(f"\nspeed-up {t_seq / t_split:.2f}x; agreement: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in ag.items()}))


if __name__ == "__main__":
    main()
