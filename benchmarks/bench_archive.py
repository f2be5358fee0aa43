"""An archive at scale (docs/benchmarks.md, "Archive"): `emoreel batch` over N short synthetic videos, some broken.

    .venv/bin/python benchmarks/bench_archive.py [--videos 1000] [--broken 0.05] [--frames 60] [--engines local ray]
                                                 [--no-kill] [--work /tmp/emoreel-archive] [--json out.json]

For each engine (local: 2 workers; ray: the Ray the command starts on this machine), both with --threads 1:
- wall time, videos per minute, time to the first finished video (planning: every input is probed first);
- overhead per video beyond its own analysis: wall x parallel slots / videos - the mean time `analyze_to_dir`
  takes on such a video in a warm process (measured here on the same videos);
- the driver's memory (RSS of the `emoreel batch` process, sampled every 0.5 s) at 10%, 50% and 90% of the
  videos and its peak: flat means the driver does not grow with the archive;
- batch.csv as it goes: finished rows seen in it at 25%, 50% and 75% of the wall time.
Then the driver is killed (kill -9) once half of the videos are done and the same command is run again
(``--kill-engine``: local, the default, or ray): how many videos the second run skipped (finished before the kill), ran, and how many finished
results folders it rewrote (must be 0).

The inputs: N videos of `--frames` frames (640x360, 30 fps, two real faces; 10 variants of face size and
length, copied), and `--broken` of them broken (empty, random bytes, cut in half, a text file, a header only).
Prints a Markdown table with the CPU model.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from emoreel.runtime import cpu_model  # noqa: E402

EMOREEL = [sys.executable, "-m", "emoreel"]


def make_archive(work: Path, n: int, broken: float, frames: int) -> tuple[Path, int]:
    """``work/videos`` with ``n`` inputs, ``round(n * broken)`` of them broken (made once, reused)."""
    from emoreel.media.sample import make_example_video

    d = work / f"videos-{n}-{broken:g}-{frames}"
    n_bad = int(round(n * broken))
    if (d / ".done").exists():
        return d, n_bad
    shutil.rmtree(d, ignore_errors=True)
    (d / "src").mkdir(parents=True)
    variants = []
    for k in range(10):
        p = d / "src" / f"variant{k}.mp4"
        make_example_video(p, frames=frames + 3 * k, face_px=150 + 10 * k)
        variants.append(p.read_bytes())
    bad_kinds = [b"", os.urandom(4000), variants[0][: len(variants[0]) // 2], b"not a video\n" * 10, variants[1][:2048]]
    bad = list(range(0, n, n // n_bad))[:n_bad] if n_bad else []  # spread through the archive
    for i in range(n):
        data = bad_kinds[bad.index(i) % len(bad_kinds)] if i in bad else variants[i % 10]
        (d / f"clip{i:05d}.mp4").write_bytes(data)
    shutil.rmtree(d / "src")
    (d / ".done").write_text(json.dumps([f"clip{i:05d}.mp4" for i in bad]))
    return d, n_bad


def own_time(videos: Path, sample: int = 20) -> float:
    """Mean seconds `analyze_to_dir` takes on one good video in a warm process (one thread), over ``sample`` videos."""
    import tempfile

    from emoreel.analysis.run import analyze_to_dir
    from emoreel.config import AnalyzeOptions

    bad = set(json.loads((videos / ".done").read_text()))
    good = [p for p in sorted(videos.glob("*.mp4")) if p.name not in bad][: sample + 1]
    with tempfile.TemporaryDirectory() as tmp:
        analyze_to_dir(good[0], Path(tmp) / "warm", AnalyzeOptions(threads=1))  # models loaded, caches warm
        t0 = time.perf_counter()
        for i, p in enumerate(good[1 : sample + 1]):
            analyze_to_dir(p, Path(tmp) / str(i), AnalyzeOptions(threads=1))
        return (time.perf_counter() - t0) / sample


def rss_mb(pid: int) -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def finished(root: Path) -> int:
    try:
        with open(root / "batch.csv", newline="") as fh:
            return sum(r["status"] in ("complete", "failed", "skipped") for r in csv.DictReader(fh))
    except (OSError, KeyError, csv.Error):
        return 0


def run_batch(videos: Path, root: Path, engine: str, n: int, kill_at: int | None = None) -> dict:
    """One `emoreel batch` run, watched: wall, memory and batch.csv over time; killed (-9) at ``kill_at`` done."""
    if not engine.endswith("resume"):  # "resume", "ray-resume": the same command again, into the same root
        shutil.rmtree(root, ignore_errors=True)
    eng = ["--engine", "ray"] if engine.startswith("ray") else ["--workers", "2"]  # "resume": the same again
    cmd = [*EMOREEL, "batch", str(videos), "-o", str(root), "-q", "--threads", "1", *eng]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=False)
    samples: list[tuple[float, float, int]] = []  # (seconds, RSS MB, videos finished in batch.csv)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            m = rss_mb(p.pid)
            if m is not None:
                samples.append((time.perf_counter() - t0, m, finished(root)))
            if kill_at is not None and samples and samples[-1][2] >= kill_at:
                os.kill(p.pid, signal.SIGKILL)
                return
            stop.wait(0.5)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    first = next((t for t, _, k in samples if k > 0), None)

    def rss_at(frac: float) -> float | None:
        return next((m for _, m, k in samples if k >= frac * n), None)

    def seen_at(frac: float) -> int:
        return next((k for t, _, k in samples if t >= frac * wall), samples[-1][2] if samples else 0)

    return {"engine": engine, "rc": p.returncode, "wall_s": wall, "summary": out.strip().splitlines()[-1:] or err.strip()[-300:],
            "first_done_s": first, "rss_mb": {"10%": rss_at(0.1), "50%": rss_at(0.5), "90%": rss_at(0.9),
                                               "peak": max((m for _, m, _ in samples), default=None)},
            "csv_rows_at": {"25%": seen_at(0.25), "50%": seen_at(0.5), "75%": seen_at(0.75)}}  # fmt: skip


def stamps(root: Path) -> dict[str, float]:
    """mtime of the results.csv of every complete run under ``root`` (not the runs in flight at the kill, nor the
    failed inputs, which the next run resumes and tries again, as documented)."""
    out = {}
    for p in root.glob("*/run.json"):
        try:
            if json.loads(p.read_text()).get("complete"):
                out[p.parent.name] = (p.parent / "results.csv").stat().st_mtime_ns
        except (OSError, ValueError):
            pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--broken", type=float, default=0.05)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--engines", nargs="*", default=["local", "ray"], choices=["local", "ray"])
    ap.add_argument("--no-kill", action="store_true", help="skip the kill-at-half-and-restart run")
    ap.add_argument("--kill-engine", default="local", choices=["local", "ray"], help="engine of that run (default local)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/emoreel-archive"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    videos, n_bad = make_archive(a.work, a.videos, a.broken, a.frames)
    print(f"{a.videos} videos ({n_bad} broken) in {videos} ({time.perf_counter() - t:.0f} s to make)", flush=True)
    own = own_time(videos)
    print(f"own analysis time per good video (warm, 1 thread): {own:.3f} s", flush=True)
    res = {"cpu": cpu_model(), "cores": os.cpu_count(), "videos": a.videos, "broken": n_bad, "frames": a.frames,
           "own_s": own, "runs": []}  # fmt: skip
    for engine in a.engines:
        r = run_batch(videos, a.work / f"root-{engine}", engine, a.videos)
        good = a.videos - n_bad
        r["videos_per_min"] = a.videos / r["wall_s"] * 60
        r["overhead_s"] = r["wall_s"] * 2 / good - own  # 2 slots: 2 workers, or Ray's 2 CPUs with 1-CPU tasks
        res["runs"].append(r)
        print(json.dumps(r), flush=True)
    if not a.no_kill:
        root = a.work / f"root-kill-{a.kill_engine}"
        first = run_batch(videos, root, a.kill_engine, a.videos, kill_at=a.videos // 2)
        before = stamps(root)
        second = run_batch(videos, root, "ray-resume" if a.kill_engine == "ray" else "resume", a.videos)
        after = stamps(root)
        with open(root / "batch.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        rewritten = sum(1 for k, m in before.items() if after.get(k) != m)
        resumed = sum(bool(json.loads(p.read_text()).get("resumed")) for p in root.glob("*/run.json"))
        res["kill"] = {"killed_at_s": first["wall_s"], "complete_before_kill": len(before), "resumed": resumed, "second_wall_s": second["wall_s"],
                       "second_rc": second["rc"], "second_summary": second["summary"], "rewritten": rewritten,
                       "statuses": {s: sum(r["status"] == s for r in rows) for s in ("complete", "skipped", "failed", "incomplete")},
                       "analysed_again": len(after) - len(before)}  # fmt: skip
        print(json.dumps(res["kill"]), flush=True)
    print(f"\nCPU: {res['cpu']}, {res['cores']} cores; {a.videos} videos ({n_bad} broken), {a.frames} frames each\n")
    print("| engine | wall s | videos/min | first done s | overhead s/video | driver RSS MB 10% / 50% / 90% / peak | batch.csv rows at 25/50/75% of wall |")
    print("|---|---|---|---|---|---|---|")
    for r in res["runs"]:
        m = r["rss_mb"]
        f = lambda x: f"{x:.0f}" if x is not None else "-"  # noqa: E731
        print(f"| {r['engine']} | {r['wall_s']:.0f} | {r['videos_per_min']:.0f} | {r['first_done_s'] or 0:.1f} | "
              f"{r['overhead_s']:.2f} | {f(m['10%'])} / {f(m['50%'])} / {f(m['90%'])} / {f(m['peak'])} | "
              f"{r['csv_rows_at']['25%']} / {r['csv_rows_at']['50%']} / {r['csv_rows_at']['75%']} |")  # fmt: skip
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
