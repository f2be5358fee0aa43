"""Label flicker (changes per second per track) before and after confident, decoded labels.

    .venv/bin/python benchmarks/flicker.py RESULTS_DIR              # an existing results folder
    .venv/bin/python benchmarks/flicker.py --analyze VIDEO OUT_DIR  # analyze first (one run)

Compares: the online smoothed label as analyze wrote it (emotion_smooth), the online label replayed
with and without --min-prob, and the offline Viterbi decoding (emoreel.outputs.decode).
"""

from __future__ import annotations

import argparse

import numpy as np

from emoreel.config import AnalyzeOptions
from emoreel.outputs.decode import DEFAULT_SWITCH_COST, decode_results, flicker, replay_smoothing
from emoreel.results import load_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="RESULTS_DIR, or VIDEO OUT_DIR with --analyze")
    ap.add_argument("--analyze", action="store_true")
    ap.add_argument("--min-prob", type=float, default=AnalyzeOptions().min_prob)
    ap.add_argument("--switch-cost", type=float, default=DEFAULT_SWITCH_COST)
    a = ap.parse_args()
    if a.analyze:
        from emoreel.analysis.run import analyze_to_dir

        video, out = a.results
        analyze_to_dir(video, out, force=True)
        folder = out
    else:
        folder = a.results[0]
    res = load_results(folder)
    params = res.meta.get("params", {})
    rep, ema = int(params.get("repeat", 3)), float(params.get("ema", 0.5))
    acc = res.cols["accepted"] == 1
    rows = [
        ("emotion_smooth as written", res.cols["emotion_smooth"]),
        ("online, replayed, no min-prob (before)", replay_smoothing(res, rep, ema, 0.0)),
        (f"online, min-prob {a.min_prob}", replay_smoothing(res, rep, ema, a.min_prob)),
        (f"Viterbi, min-prob {a.min_prob}, switch cost {a.switch_cost}", decode_results(res, a.min_prob, a.switch_cost).labels),
        ("raw per-frame label", res.cols["emotion"]),
    ]
    print(f"{folder}: {int(acc.sum())} accepted faces, {len(res.track_ids())} tracks, {res.fps:.3f} fps\n")
    print("| labels | changes of emotion | per s per track | incl. to/from none | per s | labelled faces |\n|---|---|---|---|---|---|")
    for name, lab in rows:
        ch, secs, rate = flicker(res, lab)
        ch2, _, rate2 = flicker(res, lab, count_abstain=True)
        lab = np.asarray(lab, dtype=object)
        print(f"| {name} | {ch} | {rate:.2f} | {ch2} | {rate2:.2f} | {int((lab[acc] != '').sum())} of {int(acc.sum())} |")


if __name__ == "__main__":
    main()
