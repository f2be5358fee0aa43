"""The table that decides which emotion model ships (docs/model.md, "Ship rule"): one row per model.

Columns, all through analyze's own code with its default views:
- webfaces dev: the people held out of ``webfaces.zip`` (emoreel.model.photoset.person_split), each photo
  through the whole photo path (detection, gate, alignment, emotion): accuracy over all photos, macro
  recall over the classes with 30+ photos, neutral predicted / true share;
- webfaces dev, small: the same photos shrunk so their long side is 64 px (faces of about 30-45 px, as
  in a crowd shot), JPEG quality 60, and scaled back up: what a small face in a video frame carries;
- FER2013 val (PublicTest) crops, clean and degraded (``emoreel evaluate --degrade 0``): accuracy and
  macro recall;
- our labelled real faces (benchmarks/real_faces.py): 6 photo faces x 6 conditions, the clip's
  audience shot (200 faces, happy) and the singer's smiles (26 faces, happy).

    python benchmarks/model_table.py [--model A.onnx --model B.onnx ...] [--json out.json]

The default model is always the first row. Prints a Markdown table with the CPU model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from emoreel.config import AnalyzeOptions  # noqa: E402
from emoreel.model.datasets import load_dataset  # noqa: E402
from emoreel.model.degrade import degraded_copy  # noqa: E402
from emoreel.analysis.evaluate_photos import evaluate_photos  # noqa: E402
from emoreel.model.evaluate import evaluate, load_model  # noqa: E402
from emoreel.model.photoset import PhotoSet  # noqa: E402
from emoreel.runtime import cpu_model  # noqa: E402

import real_faces  # noqa: E402

WEBFACES = SHARED / "webfaces.zip"
FER = SHARED / "fer2013-train-val.zip"
SMALL_SIDE = 64


def macro(per_class: dict, min_support: int = 30) -> float:
    rs = [m["recall"] for m in per_class.values() if m["support"] >= min_support]
    return float(np.mean(rs)) if rs else 0.0


def shrink_folder(src: Path, dst: Path) -> Path:
    """Each photo of ``src/<class>/`` shrunk to a long side of :data:`SMALL_SIDE`, JPEG q60, and scaled back up."""
    for f in sorted(src.rglob("*")):
        if not f.is_file():
            continue
        img = cv2.imread(str(f))
        if img is None:
            continue
        h, w = img.shape[:2]
        s = SMALL_SIDE / max(h, w)
        small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 60])
        if not ok:
            continue
        back = cv2.resize(cv2.imdecode(buf, cv2.IMREAD_COLOR), (w, h), interpolation=cv2.INTER_LINEAR)
        out = dst / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out.with_name(out.name + ".png")), back)  # a.jpg and a.png stay two photos
    return dst


def photos_row(folder: Path, model: str | None) -> dict:
    r = evaluate_photos(folder, model=model, options=AnalyzeOptions(model=model))
    pred, true = r.share("neutral")
    return {"photos": r.n_photos, "found": r.found, "accuracy": round(r.accuracy_all, 4), "macro_recall": round(r.macro_recall(), 4),
            "neutral_pred": round(pred, 3), "neutral_true": round(true, 3),
            "recall": {c: m["recall_all"] for c, m in r.per_class.items()}}  # fmt: skip


def crops_row(data, model: str | None) -> dict:
    r = evaluate(load_model(model), data, tta=AnalyzeOptions.views)
    return {"n": r.n, "accuracy": round(r.accuracy, 4), "macro_recall": round(macro(r.per_class), 4)}


def real_row(model: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        sets = real_faces.build_photo_sets(Path(tmp))
        photos = [evaluate_photos(folder, model=model, options=AnalyzeOptions(model=model)) for folder in sets.values()]
    right = sum(sum(p.correct for p in r.photos) for r in photos)
    total = sum(r.n_photos for r in photos)
    clip = real_faces.clip_check(model)
    singer = real_faces.clip_check(model, labelled_sets=real_faces.SINGER_FACES)
    return {"photos_right": right, "photos": total, "audience_right": round(clip["accuracy_all"] * clip["faces"]),
            "audience": clip["faces"], "singer_right": round(singer["accuracy_all"] * singer["faces"]), "singer": singer["faces"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], help="candidate model(s) (ONNX with card); the default is always row 1")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"needs {SHARED}", file=sys.stderr)
        return 2
    print(f"CPU: {cpu_model()}", flush=True)
    rows = {}
    fer = load_dataset(FER, "val")
    fer_deg = replace(fer, images=degraded_copy(fer.images, seed=0))
    with tempfile.TemporaryDirectory() as tmp, PhotoSet(WEBFACES) as ps:
        dev = ps.extract(ps.split("dev"), Path(tmp) / "dev")
        small = shrink_folder(dev, Path(tmp) / "small")
        for model in [None, *args.model]:
            name = model or "default (shipped)"
            print(f"{name} ...", file=sys.stderr, flush=True)
            rows[name] = {"webfaces_dev": photos_row(dev, model), "webfaces_dev_small": photos_row(small, model),
                          "fer_val": crops_row(fer, model), "fer_val_degraded": crops_row(fer_deg, model),
                          "real": real_row(model)}  # fmt: skip
    print("\n| model | webfaces dev acc / macro recall / neutral pred:true | dev small acc / macro | FER val acc / macro "
          "| FER degraded acc / macro | real photos | audience | singer |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        w, s, f, d, q = r["webfaces_dev"], r["webfaces_dev_small"], r["fer_val"], r["fer_val_degraded"], r["real"]
        print(f"| {name} | {w['accuracy']:.2%} / {w['macro_recall']:.2%} / {w['neutral_pred']:.2f}:{w['neutral_true']:.2f} "
              f"| {s['accuracy']:.2%} / {s['macro_recall']:.2%} | {f['accuracy']:.2%} / {f['macro_recall']:.2%} "
              f"| {d['accuracy']:.2%} / {d['macro_recall']:.2%} | {q['photos_right']}/{q['photos']} "
              f"| {q['audience_right']}/{q['audience']} | {q['singer_right']}/{q['singer']} |")
    for name, r in rows.items():
        print(f"\n{name}: webfaces dev recall {json.dumps(r['webfaces_dev']['recall'])}; "
              f"small {json.dumps(r['webfaces_dev_small']['recall'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
