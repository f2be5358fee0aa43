"""`emoreel export`: a training checkpoint -> ONNX + model card (with val metrics when --data is given)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX with its model card (needs emoreel[train])")
    p.add_argument("checkpoint", help="best.pt or last.pt written by `emoreel train`")
    p.add_argument("-o", "--out", required=True, help="ONNX file to write (the card goes beside it as .json)")
    p.add_argument("--data", help="evaluate the exported model on this data and record the numbers in the card")
    p.add_argument("--split", default="val", help="split of --data to evaluate (default val)")
    p.set_defaults(func=run)


def export_and_evaluate(checkpoint, out, data_path=None, split="val") -> str:
    """Export, then (with ``data_path``) evaluate the ONNX file itself and write the metrics into its card.

    The numbers come from the exported ONNX through the onnxruntime runtime, so
    ``emoreel evaluate --data DATA --split SPLIT --model OUT`` reproduces them exactly.
    Returns a one-line summary.
    """
    from pathlib import Path

    from ..datasets import load_dataset
    from ..evaluate import data_fingerprint, evaluate, load_model, write_card_metrics
    from ..train import export_onnx

    data = load_dataset(data_path, split) if data_path else None  # bad data fails before anything is written
    onnx_path = export_onnx(checkpoint, out)
    if data is None:
        return f"wrote {onnx_path} (no evaluation: pass --data to record val metrics in the card)"
    model = load_model(onnx_path)
    res = evaluate(model, data)
    res_tta = evaluate(model, data, tta=True)
    desc = {"data": Path(data_path).name, "data_path": str(data_path), "split": split}
    fp = data_fingerprint(data_path)
    if fp:
        desc["data_sha256"] = fp
    if data.bad_files or data.skipped_classes:
        desc["skipped"] = {"unreadable": data.bad_files, "classes": data.skipped_classes}
    write_card_metrics(onnx_path, res, desc, res_tta)
    return (
        f"wrote {onnx_path}: {split} accuracy {res.accuracy:.4f} "
        f"({res_tta.accuracy:.4f} with mirror TTA) on {res.n} faces"
    )


def run(args) -> int:
    print(export_and_evaluate(args.checkpoint, args.out, args.data, args.split))
    return 0
