"""`emoreel evaluate`: accuracy, per-class precision/recall and confusion of a model on labelled faces or photos."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate an emotion model on labelled faces, or the whole pipeline on labelled photos",
        description="Face crops (fer2013.csv, a folder/zip with <split>/<class>/ images) are classified directly. "
        "A folder of full-size photos in <class>/ folders (any image over 96 px; or --photos) goes through "
        "analyze's own path: detection at photo resolution, the face gate, alignment, classification; the "
        "largest accepted face of each photo counts.",
    )
    p.add_argument("--data", required=True, help="fer2013.csv, a folder/zip with <split>/<class>/ crops, or a folder of <class>/ photos")
    p.add_argument("--split", default=None, help="split to evaluate: train, val (PublicTest, the default), test "
                   "(PrivateTest); photos: used when DATA/<split>/<class>/ exists; a photo set with people (labels.csv "
                   "with a person column, e.g. webfaces.zip): dev (the default: the people held out from training, "
                   "emoreel.model.photoset.person_split), train or all")  # fmt: skip
    p.add_argument("--photos", action="store_true", help="DATA holds full-size photos in <class>/ folders (detected automatically)")
    p.add_argument("--model", help="ONNX file with its card beside it, or a shipped model's name (default: emoreel-fer-int8)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="--tta: the mirror alone (ten crops for models trained on crops); --no-tta: one view, the "
                   "network's own accuracy as its model card gives it (default: analyze's views, --views)")  # fmt: skip
    p.add_argument("--views", choices=("single", "mirror", "jitter"), default=None,
                   help="test-time views averaged per face, as analyze averages them (emoreel.model.emotion.VIEWS): single, "
                   "mirror, or jitter (also zoomed 10%% in and out where the mirror is unsure; analyze's default and "
                   "so this command's)")  # fmt: skip
    p.add_argument("--image-max-side", type=int, metavar="PX", help="photos: detect on photos downscaled to this long side (default: analyze's)")
    p.add_argument("--degrade", type=int, metavar="SEED", default=None,
                   help="crops: evaluate a degraded copy of the faces instead (every face gets some of: low "
                   "resolution, blur, low light, contrast loss, noise, JPEG; emoreel.model.degrade, reproducible by SEED)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    p.add_argument("--plot", metavar="PNG", help="also write the confusion matrix as a PNG")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..config import AnalyzeOptions
    from ..errors import DataError
    from ..analysis.evaluate_photos import evaluate_photos, is_photo_folder
    from ..model.evaluate import evaluate, load_model
    from ..model.photoset import PhotoSet
    from .progress import Progress

    if (args.tta is False and args.views not in (None, "single")) or (args.tta and args.views == "single"):
        raise DataError(f"--{'no-' if args.tta is False else ''}tta and --views {args.views} contradict each other: give one")
    views = args.views or {True: "mirror", False: "single", None: AnalyzeOptions.views}[args.tta]
    model = load_model(args.model)  # fails fast, before the data are read
    people = PhotoSet.is_photo_set(args.data)
    args.split = args.split or ("dev" if people else "val")
    if people or args.photos or is_photo_folder(args.data, args.split):
        if args.degrade is not None:
            raise DataError("--degrade is for face crops; photos are degraded as they are")

        opts = {"model": args.model, "tta": views != "single"}
        if views != "single":
            opts["views"] = views
        if args.image_max_side is not None:
            opts["image_max_side"] = args.image_max_side
        print(f"{model.name}: photos in {args.data}" + (f" [{args.split}]" if people else ""), file=sys.stderr)
        bar = Progress()
        try:
            photos = evaluate_photos(args.data, model, AnalyzeOptions(**opts), split=args.split, progress=bar)
        finally:
            bar.close()
        if args.plot:
            photos.faces.plot_confusion(args.plot)
        print(photos.to_json() if args.json else photos.text())
        return 0
    if args.image_max_side is not None:
        raise DataError(f"--image-max-side is for photos; {args.data} holds face crops")
    from ..model.datasets import load_dataset

    data = load_dataset(args.data, args.split)
    if args.degrade is not None:
        from dataclasses import replace

        from ..model.degrade import degraded_copy

        data = replace(data, images=degraded_copy(data.images, seed=args.degrade),
                       source=f"{data.source}, degraded (seed {args.degrade})")  # fmt: skip
    print(f"{model.name}: {data.summary()}", file=sys.stderr)
    result = evaluate(model, data, tta=views)  # models trained on crops: ten crops for mirror and jitter
    if args.plot:
        result.plot_confusion(args.plot)
    print(result.to_json() if args.json else result.text())
    return 0
