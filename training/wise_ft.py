"""Weight-space ensembling of a robust fine-tune with its starting point (WiSE-FT, Wortsman et al. 2022).

The shipped emotion model of 2026-12-02 is ``alpha`` x (the mean of the fine-tunes' best and last
checkpoints: one run or several, a "model soup") + (1 - alpha) x the network they were fine-tuned from (an exported ONNX; its BatchNorm
rebuilt from training statistics by ``emoreel.model.training.checkpoints.init_from_onnx``). Fine-tuning for real-video
conditions moved the weights within one basin, so the interpolation keeps most of the robustness and
recovers the clean accuracy (docs/model.md, "Round 3"). Writes a checkpoint ``emoreel export`` takes.

    python training/wise_ft.py runs/robust-v3 [runs/robust-v4 ...] --start START.onnx --alpha 0.8 \\
        --data ../shared/data/fer2013-train-val.zip -o runs/wise.pt
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from emoreel.model.datasets import load_dataset  # noqa: E402
from emoreel.model.emotion import sha256_file  # noqa: E402
from emoreel.model.training.architectures import build_model  # noqa: E402
from emoreel.model.training.checkpoints import init_from_onnx, load_checkpoint  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="the fine-tunes' folders (best.pt and last.pt of each), same start")
    ap.add_argument("--start", required=True, help="the exported float ONNX they were fine-tuned from (--init)")
    ap.add_argument("--alpha", type=float, default=0.8, help="weight of the fine-tunes (1 = the fine-tunes alone)")
    ap.add_argument("--data", required=True, help="training data (BatchNorm statistics of the start network, at the "
                    "fine-tunes' input size: a 48-px start of a 64-px run is rebuilt on 64-px faces)")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    members, provenance = [], []
    for run in a.runs:
        best, cfg, ck = load_checkpoint(Path(run) / "best.pt")
        last, _, ck_last = load_checkpoint(Path(run) / "last.pt")
        members += [best.state_dict(), last.state_dict()]
        provenance.append({"run": str(run), "command": ck.get("command", ""),
                           "epochs": [int(ck["epoch"]) + 1, int(ck_last["epoch"]) + 1],
                           "val_acc": [round(float(ck["val_acc"]), 4), round(float(ck_last["history"][-1]["val_acc"]), 4)]})
        if len(members) == 2:
            first = (ck, cfg)  # the card's training record: the first run's
    ck, cfg = first
    start = build_model(cfg)
    init_from_onnx(start, a.start, load_dataset(a.data, "train", cfg.size).images, cfg)  # at the fine-tunes' size
    sd = {k: v.clone() for k, v in members[0].items()}
    parts = [(m, a.alpha / len(members)) for m in members] + [(start.state_dict(), 1 - a.alpha)]
    for k, v in sd.items():
        if v.is_floating_point():
            sd[k] = sum(w * p[k] for p, w in parts)
    data = dict(ck.get("data", {}))
    data["wise_ft"] = {
        "command": shlex.join(["python", *sys.argv]),
        "alpha": a.alpha,
        "fine_tunes": provenance,
        "start": {"model": str(a.start), "sha256": sha256_file(a.start)},
    }
    # the mix has no training-time accuracy of its own: evaluate the export
    out = {**{k: v for k, v in ck.items() if k not in ("model", "optimizer", "val_acc")}, "model": sd, "data": data}
    torch.save(out, a.out)
    print(f"wrote {a.out}: {a.alpha} x {len(a.runs)} fine-tune(s) + {1 - a.alpha:.2f} x {a.start}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
