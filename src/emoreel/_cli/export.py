"""`emoreel export`: a training checkpoint -> ONNX + model card (with val metrics when --data is given)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX with its model card (needs emoreel[train])")
    p.add_argument("checkpoint", help="best.pt or last.pt written by `emoreel train`")
    p.add_argument("-o", "--out", required=True, help="ONNX file to write (the card goes beside it as .json)")
    p.add_argument("--data", help="evaluate the exported model on this data and record the numbers in the card")
    p.add_argument("--split", default="val")
    p.set_defaults(func=run)


def export_and_evaluate(checkpoint, out, data_path=None, split="val") -> str:
    """Export, then (optionally) evaluate the ONNX file itself and write the metrics into its card."""
    from pathlib import Path

    from ..datasets import load_dataset
    from ..evaluate import evaluate, write_card_metrics
    from ..train import export_onnx

    onnx_path = export_onnx(checkpoint, out)
    if not data_path:
        return f"wrote {onnx_path}"
    data = load_dataset(data_path, split)
    res = evaluate(onnx_path, data)
    res_tta = evaluate(onnx_path, data, tta=True)
    write_card_metrics(onnx_path, res, {"data": Path(data_path).name, "split": split}, res_tta)
    return f"wrote {onnx_path}: {split} accuracy {res.accuracy:.4f} ({res_tta.accuracy:.4f} with mirror TTA) on {res.n} faces"


def run(args) -> int:
    print(export_and_evaluate(args.checkpoint, args.out, args.data, args.split))
    return 0
