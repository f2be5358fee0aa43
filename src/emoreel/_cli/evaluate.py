"""`emoreel evaluate`: accuracy, per-class precision/recall and confusion of a model on labelled faces."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate an emotion model on labelled faces")
    p.add_argument("--data", required=True, help="fer2013.csv, or a folder/zip with <split>/<class>/ images")
    p.add_argument("--split", default="val", help="split to evaluate: train, val (PublicTest), test (PrivateTest)")
    p.add_argument("--model", help="ONNX file with its card beside it, or a shipped model's name (default: emoreel-fer-int8)")
    p.add_argument("--tta", action="store_true", help="average each face with its mirror image")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    p.add_argument("--plot", metavar="PNG", help="also write the confusion matrix as a PNG")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..datasets import load_dataset
    from ..evaluate import evaluate, load_model

    model = load_model(args.model)  # fails fast, before the data are read
    data = load_dataset(args.data, args.split)
    print(f"{model.name}: {data.summary()}", file=sys.stderr)
    result = evaluate(model, data, tta=args.tta)
    if args.plot:
        result.plot_confusion(args.plot)
    print(result.to_json() if args.json else result.text())
    return 0
