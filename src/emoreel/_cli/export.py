"""`emoreel export`: a training checkpoint -> ONNX + model card (with val metrics when --data is given)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX with its model card (needs emoreel[train])",
                       description="Turn a checkpoint of `emoreel train` into an ONNX file with its model card "
                       "(.json beside it), optionally an int8 copy; with --data the exported files themselves are "
                       "evaluated and calibrated, and the numbers recorded in their cards. Use the result with "
                       "`emoreel analyze --model FILE.onnx`. Needs emoreel[train] (except re-exporting an .onnx).")  # fmt: skip
    p.add_argument("checkpoint", nargs="+", help="best.pt or last.pt written by `emoreel train`; several make one "
                   "ensemble (their log-probabilities averaged). An exported float .onnx (with its card) is copied "
                   "with a new card instead, without torch: e.g. to add --standardize once its checkpoint is gone")
    p.add_argument("-o", "--out", required=True, help="ONNX file to write (the card goes beside it as .json)")
    p.add_argument("--data", help="evaluate the exported model on this data and record the numbers in the card")
    p.add_argument("--split", default="val", help="split of --data to evaluate (default val)")
    p.add_argument("--int8", metavar="ONNX", help="also write an int8 copy here (about 3x faster on CPU), calibrated on "
                   "--calib-split of --data and evaluated like the float model")
    p.add_argument("--calib-split", default="train", help="split of --data that calibrates --int8 (default train)")
    p.add_argument("--standardize", action="store_true", help="normalise each face's brightness and contrast at run "
                   "time although the checkpoint was trained without (automatic for checkpoints trained with it)")
    p.set_defaults(func=run)


def export_and_evaluate(checkpoint, out, data_path=None, split="val", int8=None, calib_split="train",
                        standardize=False) -> str:  # fmt: skip
    """Export, then (with ``data_path``) evaluate the ONNX file itself and write the metrics into its card.

    The numbers come from the exported ONNX through the onnxruntime runtime, so
    ``emoreel evaluate --data DATA --split SPLIT --model OUT --no-tta`` reproduces them exactly (``--tta``: the
    mirror number).
    With ``int8`` an int8 copy is written and evaluated the same way. Returns one summary line per file.
    """
    from pathlib import Path

    from ..model.datasets import load_dataset
    from ..errors import InputError
    from ..model.evaluate import data_fingerprint
    from ..model.training.export import export_onnx

    if int8 and not data_path:
        raise InputError("--int8 needs --data (its calibration faces and its evaluation come from there)")
    if int8 and calib_split == split:
        raise InputError(f"--calib-split must differ from --split ({split}): calibrate on training data")
    data = load_dataset(data_path, split) if data_path else None  # bad data fails before anything is written
    calib = load_dataset(data_path, calib_split) if int8 else None
    paths = [str(c) for c in checkpoint] if isinstance(checkpoint, (list, tuple)) else [str(checkpoint)]
    if any(c.lower().endswith(".onnx") for c in paths):
        if len(paths) > 1:
            raise InputError("an exported .onnx model is re-exported on its own (ensembles are made from checkpoints)")
        from ..model.training.export import reexport_onnx

        onnx_path = reexport_onnx(paths[0], out, standardize=standardize)
    else:
        onnx_path = export_onnx(checkpoint, out, standardize=standardize)
    if data is None:
        return f"wrote {onnx_path} (no evaluation: pass --data to record val metrics in the card)"
    desc = {"data": Path(data_path).name, "data_path": str(data_path), "split": split}
    fp = data_fingerprint(data_path)
    if fp:
        desc["data_sha256"] = fp
    if data.bad_files or data.skipped_classes:
        desc["skipped"] = {"unreadable": data.bad_files, "classes": data.skipped_classes}
    lines = [_calibrate_into_card(onnx_path, data, split), _evaluate_into_card(onnx_path, data, desc, split)]
    if int8:
        from ..model.training.export import quantize_int8

        q = quantize_int8(onnx_path, int8, calib.images)
        lines += [_calibrate_into_card(q, data, split), _evaluate_into_card(q, data, desc, split)]
    return "\n".join(lines)


def _calibrate_into_card(onnx_path, data, split) -> str:
    """Fit the model's softmax temperature on ``data`` into its card.

    Fitted on single-view probabilities, where ``softmax(logits / T)`` is exactly what the runtime
    computes per view (with test-time augmentation it then averages the calibrated views).
    """
    from ..model.emotion import fit_temperature, read_card, write_card
    from ..model.evaluate import load_model, predict_dataset

    card = read_card(onnx_path)
    model = load_model(onnx_path)
    model.temperature = 1.0  # the fit starts from the raw softmax, whatever the card says now
    probs = predict_dataset(model, data, tta=False)
    cal = fit_temperature(probs, data.labels)
    card.setdefault("output", {})["temperature"] = cal["temperature"]
    card["calibration"] = {**cal, "fitted_on": f"{split} ({len(data)} faces), one view per face",
                           "note": "probabilities are softmax(logits / temperature) per view (mirror or crops are "
                                   "then averaged); the single-view argmax, so its accuracy, does not change"}
    write_card(onnx_path, card)
    return (f"calibrated {onnx_path}: temperature {cal['temperature']}, expected calibration error "
            f"{cal['ece_before']:.3f} -> {cal['ece_after']:.3f}")


def _evaluate_into_card(onnx_path, data, desc, split) -> str:
    from ..model.evaluate import evaluate, load_model, write_card_metrics

    model = load_model(onnx_path)
    res = evaluate(model, data)
    res_tta = evaluate(model, data, tta=True)
    write_card_metrics(onnx_path, res, desc, res_tta)
    return f"wrote {onnx_path}: {split} accuracy {res.accuracy:.4f} ({res_tta.accuracy:.4f} with mirror TTA) on {res.n} faces"


def run(args) -> int:
    print(export_and_evaluate(args.checkpoint, args.out, args.data, args.split, args.int8, args.calib_split,
                              args.standardize))
    return 0
