"""Training on synthetic data lowers the loss, checkpoints resume, and ONNX export matches PyTorch."""

from __future__ import annotations

import json
from dataclasses import replace
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emoreel.cli import main  # noqa: E402
from emoreel.errors import ModelError  # noqa: E402
from emoreel.model.datasets import LabelledFaces  # noqa: E402
from emoreel.model.emotion import EmotionModel, Standardize, read_card, sha256_file  # noqa: E402
from emoreel.model.evaluate import evaluate  # noqa: E402
from emoreel.model.training.architectures import normalise  # noqa: E402
from emoreel.model.training.checkpoints import load_checkpoint  # noqa: E402
from emoreel.model.training.config import TrainConfig, data_from_command  # noqa: E402
from emoreel.model.training.export import export_onnx  # noqa: E402
from emoreel.model.training.loop import train  # noqa: E402
from emoreel.types import EMOTIONS  # noqa: E402


def synthetic(n_per=40, seed=0) -> LabelledFaces:
    """Each class is a stripe pattern of its own period (flip-invariant, local): learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    rows = np.arange(48)[:, None]
    for c in range(7):
        for _ in range(n_per):
            stripes = (np.sin(2 * np.pi * (rows + rng.uniform(0, 10)) / (2 + c)) > 0) * 150
            img = (rng.integers(0, 60, (48, 48)) + stripes).astype(np.uint8)
            imgs.append(img)
            labels.append(c)
    return LabelledFaces(np.stack(imgs), np.array(labels), source="synthetic")


CFG = dict(widths=(8, 16), batch_size=32, lr=0.05, warmup_epochs=0.5, rotate_deg=3, scale=0.03, shift=0.02, erase_p=0, threads=1)


def write_folder(root, data: LabelledFaces, split: str):
    for i, (img, lab) in enumerate(zip(data.images, data.labels)):
        d = root / split / EMOTIONS[lab]
        d.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(d / f"{i}.png"), img)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    res = train(synthetic(), synthetic(10, seed=1), out, TrainConfig(epochs=6, **CFG), command="test")
    return out, res


def test_training_lowers_loss_and_checkpoints(trained):
    out, res = trained
    losses = [h.train_loss for h in res.history]
    assert losses[-1] < losses[0] * 0.8
    assert res.best_val_acc > 0.5  # chance is 1/7
    assert (out / "last.pt").exists() and (out / "best.pt").exists()
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["history"]) == 6 and hist["command"] == "test"
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    assert best["epoch"] + 1 == res.best_epoch and best["val_acc"] == res.best_val_acc
    assert best["data"] == {"train": "synthetic", "n_train": 280, "val": "synthetic", "n_val": 70}
    last = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 5 and len(last["history"]) == 6


def test_resume_continues_from_checkpoint(trained, tmp_path):
    out, res = trained
    shutil.copytree(out, tmp_path / "r", dirs_exist_ok=True)
    more = train(synthetic(), synthetic(10, seed=1), tmp_path / "r", TrainConfig(epochs=8, **CFG), resume=True, command="again")
    assert [h.epoch for h in more.history] == list(range(1, 9))  # 6 from the checkpoint, 2 more
    assert [h.train_loss for h in more.history[:6]] == [h.train_loss for h in res.history]
    ck = torch.load(tmp_path / "r" / "last.pt", map_location="cpu", weights_only=False)
    assert ck["command"] == "test" and ck["resume_commands"] == ["again"]


def test_init_starts_from_another_runs_weights(trained, tmp_path):
    """--init: a new run begins where the given checkpoint ended (not from scratch) and records where it came from."""
    out, res = trained
    tr, va = synthetic(), synthetic(10, seed=1)
    warm = train(tr, va, tmp_path / "warm", TrainConfig(epochs=1, **CFG), init=out / "best.pt", command="warm")
    cold = train(tr, va, tmp_path / "cold", TrainConfig(epochs=1, **CFG), command="cold")
    assert warm.history[0].train_loss < cold.history[0].train_loss * 0.8
    assert warm.best_val_acc >= res.best_val_acc - 0.1
    init = torch.load(tmp_path / "warm" / "best.pt", map_location="cpu", weights_only=False)["data"]["init"]
    assert init["command"] == "test" and init["epochs"] == res.best_epoch and init["val_acc"] == round(res.best_val_acc, 4)
    train(tr, va, tmp_path / "warm", TrainConfig(epochs=2, **CFG), init=out / "best.pt", resume=True)  # resumed: keeps it
    assert torch.load(tmp_path / "warm" / "last.pt", map_location="cpu", weights_only=False)["data"]["init"] == init
    with pytest.raises(Exception, match="widths"):
        train(tr, va, tmp_path / "bad", TrainConfig(epochs=1, **{**CFG, "widths": (8, 8)}), init=out / "best.pt")


class Stop(Exception):
    pass


def test_interrupted_run_resumes_exactly(tmp_path):
    """Stopping after epoch 2 of 4 and resuming gives the same run as never stopping."""
    cfg = TrainConfig(epochs=4, **{**CFG, "erase_p": 0.3})
    tr, va = synthetic(12), synthetic(4, seed=1)
    whole = train(tr, va, tmp_path / "whole", cfg)

    def stop_after_2(entry, total):
        if entry.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(tr, va, tmp_path / "cut", cfg, on_epoch=stop_after_2)
    seen = []
    resumed = train(tr, va, tmp_path / "cut", cfg, resume=True, on_epoch=lambda e, n: seen.append(e.epoch))
    assert seen == [3, 4]  # only the missing epochs ran
    for a, b in zip(whole.history, resumed.history):
        assert (a.epoch, a.train_loss, a.train_acc, a.val_acc) == pytest.approx((b.epoch, b.train_loss, b.train_acc, b.val_acc), rel=1e-6)


def test_onnx_export_matches_pytorch_logits_and_card(trained, tmp_path):
    out, res = trained
    onnx_path = export_onnx(out / "best.pt", tmp_path / "m.onnx")
    card = read_card(onnx_path)
    assert card["sha256"] == sha256_file(onnx_path) and card["file"] == "m.onnx"
    assert card["classes"] == list(EMOTIONS) and card["input"]["size"] == [48, 48] and card["input"]["colour"] == "grey"
    t = card["training"]
    assert t["command"] == "test" and t["epochs_trained"] == res.best_epoch and t["data"]["train"] == "synthetic"
    model, _, _ = load_checkpoint(out / "best.pt")
    x = synthetic(3, seed=2).images
    with torch.no_grad():
        ref = model(normalise(torch.from_numpy(x))).numpy()
    runtime = EmotionModel(onnx_path)
    inp = runtime.preprocess(list(x))  # the card's preprocessing is the training normalisation
    assert np.abs(inp - normalise(torch.from_numpy(x)).numpy()).max() < 1e-6
    logits = runtime.session.run(None, {runtime.input_name: inp})[0]
    assert logits.shape == (21, 7) and np.abs(logits - ref).max() < 1e-4
    probs = runtime.predict(list(x))
    assert np.abs(probs - torch.softmax(torch.from_numpy(ref), 1).numpy()).max() < 1e-4


def test_ensemble_export_averages_the_members(trained, tmp_path, capsys):
    """Two checkpoints export as one ONNX whose output is the mean of their log-probabilities."""
    out, _ = trained
    other = train(synthetic(), synthetic(10, seed=1), tmp_path / "b", TrainConfig(epochs=2, **{**CFG, "seed": 1}), command="b")
    ds = write_folder(tmp_path / "ds", synthetic(5, seed=3), "val")
    onnx_path = tmp_path / "ens.onnx"
    assert main(["export", str(out / "best.pt"), other.checkpoint, "-o", str(onnx_path), "--data", str(ds)]) == 0
    card = read_card(onnx_path)
    assert card["architecture"]["type"].startswith("ensemble of 2")
    assert [m["command"] for m in card["training"]["members"]] == ["test", "b"]
    x = synthetic(3, seed=2).images
    inp = torch.from_numpy(x)
    with torch.no_grad():
        logp = [torch.log_softmax(load_checkpoint(c)[0](normalise(inp)), 1) for c in (out / "best.pt", other.checkpoint)]
    t = card["output"]["temperature"]  # calibrated at export on --data
    want = torch.softmax((logp[0] + logp[1]) / 2 / t, 1).numpy()
    got = EmotionModel(onnx_path).predict(list(x))
    assert np.abs(got - want).max() < 1e-4
    assert card["evaluation"]["n"] == 35


def test_cli_export_then_evaluate_reproduces_card(trained, tmp_path, capsys):
    out, _ = trained
    data = synthetic(5, seed=3)
    ds = write_folder(tmp_path / "ds", data, "val")
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(out / "best.pt"), "-o", str(onnx_path), "--data", str(ds)]) == 0
    assert "val accuracy" in capsys.readouterr().out
    card = read_card(onnx_path)
    e = card["evaluation"]
    assert e["split"] == "val" and e["data"] == "ds" and e["n"] == 35 and set(e["per_class_recall"]) == set(EMOTIONS)
    assert card["sha256"] == sha256_file(onnx_path)
    assert main(["evaluate", "--data", str(ds), "--model", str(onnx_path), "--json", "--views", "single"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"accuracy", "n", "classes", "per_class", "confusion"} <= set(result)
    assert result["accuracy"] == e["val_accuracy"] and result["confusion"] == e["confusion"]
    conf = np.array(result["confusion"])
    assert conf.sum() == result["n"] == 35
    assert np.trace(conf) / conf.sum() == pytest.approx(result["accuracy"], abs=1e-4)
    assert evaluate(onnx_path, data).accuracy == pytest.approx(result["accuracy"], abs=1e-4)


def test_cli_export_int8_copy_agrees_with_the_float_model(trained, tmp_path, capsys):
    """--int8 writes a smaller quantized model, calibrated on train, with its own card and evaluation."""
    out, _ = trained
    ds = write_folder(tmp_path / "ds", synthetic(5, seed=3), "val")
    write_folder(ds, synthetic(10, seed=4), "train")
    fp, q = tmp_path / "m.onnx", tmp_path / "m-int8.onnx"
    assert main(["export", str(out / "best.pt"), "-o", str(fp), "--data", str(ds), "--int8", str(q)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and str(q) in lines[3]  # calibration + evaluation per file; the quantizer's chatter stays off stdout
    assert lines[0].startswith("calibrated") and lines[2].startswith("calibrated")
    card, fcard = read_card(q), read_card(fp)
    assert card["sha256"] == sha256_file(q) and card["quantization"]["from"]["sha256"] == fcard["sha256"]
    assert card["classes"] == fcard["classes"] and card["input"] == fcard["input"] and card["training"] == fcard["training"]
    assert card["evaluation"]["n"] == 35
    import onnx

    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = list(synthetic(6, seed=5).images)
    pf, pq = EmotionModel(fp).predict(x), EmotionModel(q).predict(x)
    assert (pf.argmax(1) == pq.argmax(1)).mean() >= 0.9 and np.abs(pf - pq).max() < 0.2
    assert abs(card["evaluation"]["val_accuracy"] - fcard["evaluation"]["val_accuracy"]) <= 0.1
    # calibrating on the reported split is refused, and --int8 without data says why
    assert main(["export", str(out / "best.pt"), "-o", str(fp), "--data", str(ds), "--int8", str(q), "--calib-split", "val"]) == 2
    assert "--calib-split" in capsys.readouterr().err
    assert main(["export", str(out / "best.pt"), "-o", str(fp), "--int8", str(q)]) == 2
    assert "--int8 needs --data" in capsys.readouterr().err


def test_shipped_models_resolve_by_name():
    from emoreel.model.emotion import default_model_path, resolve_model

    assert resolve_model(None) == default_model_path() and default_model_path().name == "emoreel-fer-int8.onnx"
    assert resolve_model("emoreel-fer") == default_model_path().with_name("emoreel-fer.onnx")
    assert resolve_model("emoreel-fer.onnx").is_file()
    assert resolve_model("no-such-model") == Path("no-such-model")  # left for the caller to report


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.pt"), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"emoreel: error: checkpoint {tmp_path / 'none.pt'} not found"
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["export", str(tmp_path / "junk.pt"), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a readable emoreel checkpoint" in err
    assert not (tmp_path / "m.onnx").exists()


def test_cli_train_resume_and_export(tmp_path, capsys, monkeypatch):
    ds = write_folder(tmp_path / "ds", synthetic(6), "train")
    write_folder(ds, synthetic(3, seed=1), "val")
    run = tmp_path / "run"
    common = ["train", "--data", str(ds), "--out", str(run), "--widths", "8,16", "--batch-size", "16", "--threads", "1"]
    first = [*common, "--epochs", "1"]
    monkeypatch.setattr(sys, "argv", ["emoreel", *first])
    assert main(first) == 0
    assert "epoch 1/1" in capsys.readouterr().err
    second = [*common, "--resume", "--epochs", "2", "--export", str(tmp_path / "m.onnx")]
    monkeypatch.setattr(sys, "argv", ["emoreel", *second])
    assert main(second) == 0
    captured = capsys.readouterr()
    assert "epoch 1/" not in captured.err and "epoch 2/2" in captured.err  # continued at epoch 2
    assert "val accuracy" in captured.out
    hist = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in hist["history"]] == [1, 2] and hist["config"]["epochs"] == 2
    card = read_card(tmp_path / "m.onnx")
    t, e = card["training"], card["evaluation"]
    assert t["command"] == "emoreel " + " ".join(first)
    assert t["resume_commands"] == ["emoreel " + " ".join(second)]
    assert t["data"]["train"] == f"{ds} [train]" and t["data"]["n_train"] == 42 and t["data"]["n_val"] == 21
    assert e["split"] == "val" and e["n"] == 21 and t["epochs_trained"] in (1, 2)


def test_data_from_command():
    cmd = "emoreel train --data '../my data/fer.zip' --out r --train-split=train2 --resume"
    assert data_from_command(cmd) == {"train": "../my data/fer.zip [train2]", "val": "../my data/fer.zip [val]"}
    assert data_from_command("emoreel train --out r") == {} and data_from_command("'unbalanced") == {}


def test_load_checkpoint_missing(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "x.pt")


def test_standardized_training_matches_the_runtime(tmp_path):
    """--standardize: training sees each face contrast-normalised exactly as the runtime later
    normalises it (the card carries it); a dimmed, flattened face then gets the same prediction."""
    out = tmp_path / "run"
    train(synthetic(), synthetic(10, seed=1), out, TrainConfig(epochs=2, standardize=True, **CFG), command="test")
    onnx_path = export_onnx(out / "best.pt", tmp_path / "s.onnx")
    std = read_card(onnx_path)["input"]["standardize"]
    assert std["in_training"] is True and std["mean"] == 145.0 and std["std"] == 67.0
    model, cfg, _ = load_checkpoint(out / "best.pt")
    assert cfg.standardize
    x = synthetic(3, seed=2).images
    runtime = EmotionModel(onnx_path)
    seen = np.rint(Standardize().apply(x)).astype(np.uint8)  # what training fed the network
    with torch.no_grad():
        ref = torch.softmax(model(normalise(torch.from_numpy(seen))), 1).numpy()
    assert np.abs(runtime.predict(list(x)) - ref).max() < 0.02  # (training rounds to uint8)
    dim = (x.astype(np.float32) * 0.3 + 20).astype(np.uint8)  # a dark, flat copy of each face
    assert np.abs(runtime.predict(list(dim)) - runtime.predict(list(x))).max() < 0.05


def test_standardize_added_at_export_is_marked_as_not_trained(trained, tmp_path):
    out, _ = trained
    assert "standardize" not in read_card(export_onnx(out / "best.pt", tmp_path / "a.onnx"))["input"]
    std = read_card(export_onnx(out / "best.pt", tmp_path / "b.onnx", standardize=True))["input"]["standardize"]
    assert std["in_training"] is False


def test_standardize_maps_the_inner_face_to_the_training_statistics():
    face = np.indices((48, 48)).sum(0) % 2 * 20.0 + 40  # dim and flat: 40/60, a checkerboard
    face[:8] = 0  # the border (hair, background) does not count
    x = Standardize().apply(face[None])[0]
    assert x[8:40, 8:40].mean() == pytest.approx(145, abs=0.01) and x[8:40, 8:40].std() == pytest.approx(67, abs=0.01)
    assert x[0, 0] == 0  # far below the face: clipped
    assert np.all(Standardize().apply(np.full((1, 48, 48), 30.0)) == 145)  # a flat crop stays flat


def test_reexport_of_an_onnx_model_keeps_its_weights_and_adds_standardize(trained, tmp_path, capsys, monkeypatch):
    """`emoreel export model.onnx --standardize`: for a model whose checkpoint is gone, the same
    network with a new card (per-face normalisation at run time, its own evaluation), no torch needed."""
    out, _ = trained
    ds = write_folder(tmp_path / "ds", synthetic(5, seed=3), "val")
    write_folder(ds, synthetic(10, seed=4), "train")
    src, dst, q = tmp_path / "src.onnx", tmp_path / "std.onnx", tmp_path / "std-int8.onnx"
    src_int8 = tmp_path / "src-int8.onnx"
    assert main(["export", str(out / "best.pt"), "-o", str(src), "--data", str(ds), "--int8", str(src_int8)]) == 0
    capsys.readouterr()
    monkeypatch.setattr("emoreel.model.training.export.torch", None)  # the re-export path must not touch torch
    argv = ["export", str(src), "-o", str(dst), "--standardize", "--data", str(ds), "--int8", str(q)]
    monkeypatch.setattr(sys, "argv", ["emoreel", *argv])
    assert main(argv) == 0
    lines = [ln for ln in capsys.readouterr().out.strip().splitlines() if ln.startswith("wrote")]
    assert len(lines) == 2 and str(dst) in lines[0] and str(q) in lines[1]
    s, d = read_card(src), read_card(dst)
    assert dst.read_bytes() == src.read_bytes() and d["sha256"] == s["sha256"]
    assert d["input"]["standardize"]["in_training"] is False and "standardize" not in s["input"]
    assert d["training"] == s["training"] and d["classes"] == s["classes"] and d["name"] == "std"
    assert d["reexported"]["from"] == {"file": "src.onnx", "sha256": s["sha256"]}
    assert d["reexported"]["command"] == "emoreel " + " ".join(argv)
    assert d["evaluation"]["n"] == 35  # evaluated afresh, with the normalisation
    assert read_card(q)["input"]["standardize"] == d["input"]["standardize"]  # int8 copy calibrated on normalised faces
    x = synthetic(3, seed=2).images
    dim = (x.astype(np.float32) * 0.3 + 20).astype(np.uint8)
    ps, pd = EmotionModel(src), EmotionModel(dst)
    assert np.abs(pd.predict(list(dim)) - pd.predict(list(x))).max() < np.abs(ps.predict(list(dim)) - ps.predict(list(x))).max()
    # an int8 source, an ensemble with an .onnx, and writing over the source are refused in one line
    for bad in (["export", str(src_int8), "-o", str(tmp_path / "x.onnx")],
                ["export", str(src), str(out / "best.pt"), "-o", str(tmp_path / "x.onnx")],
                ["export", str(src), "-o", str(src), "--standardize"]):
        assert main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("emoreel: error:")
    assert not (tmp_path / "x.onnx").exists() and src.read_bytes() == dst.read_bytes()


def test_robust_training_options_run_and_resume_with_their_rng(tmp_path):
    """--degrade / --yaw / --mixup train, and a resumed run continues the degradation RNG exactly."""
    cfg = TrainConfig(epochs=2, degrade_p=0.5, yaw_deg=35, mixup=0.4, **CFG)
    full = train(synthetic(), synthetic(10, seed=1), tmp_path / "a", cfg, command="test")

    def stop_after_1(entry, total):
        raise Stop

    with pytest.raises(Stop):
        train(synthetic(), synthetic(10, seed=1), tmp_path / "b", cfg, command="test", on_epoch=stop_after_1)
    resumed = train(synthetic(), synthetic(10, seed=1), tmp_path / "b", cfg, resume=True, command="test")
    assert [h.train_loss for h in resumed.history] == pytest.approx([h.train_loss for h in full.history], rel=1e-6)
    assert all(np.isfinite(h.train_loss) for h in full.history)


def test_init_from_an_exported_onnx_rebuilds_the_network_exactly(trained, tmp_path):
    """An exported model (BatchNorm folded away) is a valid --init: eval-mode logits equal the ONNX logits,
    and training-mode BatchNorm statistics match the data (the first step does not wreck the network)."""
    from emoreel.model.training.architectures import build_model
    from emoreel.model.training.checkpoints import init_from_onnx

    out, _ = trained
    onnx_path = export_onnx(out / "best.pt", tmp_path / "m.onnx")
    data = synthetic(20, seed=3)
    model = build_model(TrainConfig(**CFG))
    info = init_from_onnx(model, onnx_path, data.images, TrainConfig(**CFG))
    assert info["sha256"] == sha256_file(onnx_path)
    runtime = EmotionModel(onnx_path)
    x = data.images
    logits = runtime.session.run(None, {runtime.input_name: runtime.preprocess(list(x))})[0]
    with torch.no_grad():
        model.eval()
        ours = model(normalise(torch.from_numpy(x))).numpy()
        model.train()
        model.head[2].eval()  # dropout off: compare BatchNorm's batch statistics only
        train_mode = model(normalise(torch.from_numpy(x))).numpy()
    assert np.abs(ours - logits).max() < 1e-3
    assert (train_mode.argmax(1) == ours.argmax(1)).mean() > 0.9


def test_temperature_is_fitted_and_applied_by_the_runtime(trained, tmp_path, capsys):
    """export calibrates a softmax temperature on the evaluation split into the card; the runtime uses it,
    the argmax (accuracy) does not change, and calibration error does not grow."""
    out, _ = trained
    data_root = tmp_path / "data"
    write_folder(data_root, synthetic(10, seed=1), "val")
    write_folder(data_root, synthetic(10, seed=4), "train")
    assert main(["export", str(out / "best.pt"), "-o", str(tmp_path / "m.onnx"), "--data", str(data_root)]) == 0
    card = read_card(tmp_path / "m.onnx")
    cal = card["calibration"]
    assert card["output"]["temperature"] == cal["temperature"] > 0 and cal["ece_after"] <= cal["ece_before"] + 1e-6
    model = EmotionModel(tmp_path / "m.onnx")
    x = list(synthetic(3, seed=2).images)
    logits = model.session.run(None, {model.input_name: model.preprocess(x)})[0]
    t = cal["temperature"]
    expected = np.exp(logits / t) / np.exp(logits / t).sum(1, keepdims=True)
    assert np.abs(model.predict(x) - expected).max() < 1e-5


def test_fit_temperature_recovers_an_overconfident_models_temperature():
    from emoreel.model.emotion import fit_temperature

    rng = np.random.default_rng(0)
    n = 4000
    labels = rng.integers(0, 7, n)
    true_logits = rng.normal(0, 1, (n, 7))
    true_logits[np.arange(n), labels] += 1.5  # calibrated logits: sample labels from them
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(7, p=row) for row in p])
    over = np.exp(true_logits * 2.5)  # an overconfident model: logits 2.5x too large
    cal = fit_temperature(over / over.sum(1, keepdims=True), labels)
    assert 2.2 < cal["temperature"] < 2.8 and cal["ece_after"] < cal["ece_before"]


def test_degraded_copy_is_reproducible_and_degrades_every_face():
    from emoreel.model.degrade import Degrade, degraded_copy

    x = synthetic(5).images
    a, b = degraded_copy(x, seed=0), degraded_copy(x, seed=0)
    assert a.shape == x.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert all(np.abs(a[i].astype(int) - x[i]).mean() > 0.5 for i in range(len(x)))
    same = Degrade(0.0)(x, np.random.default_rng(0))
    assert np.array_equal(same, x)


def test_vgg_recipe_on_crops_with_compact_checkpoints_exports_and_ten_crops(tmp_path, capsys):
    """The round-2 recipe end to end at toy size: VGG-GAP on random 40 px crops, a schedule in images
    seen, float16 checkpoints that resume on another "machine" with another batch size, an exported
    model whose card makes the runtime crop the centre (or ten crops with TTA)."""
    tr, va = synthetic(), synthetic(10, seed=1)
    n_images = 3 * (len(tr) // 32) * 32
    cfg = TrainConfig(**{**CFG, "widths": (8, 16, 16)}, arch="vgg", crop=40, images=n_images, compact=True)

    def stop_after_1(entry, total):
        assert total == 3  # epochs from the image budget
        raise Stop

    with pytest.raises(Stop):
        train(tr, va, tmp_path / "run", cfg, command="test", on_epoch=stop_after_1)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert all(v.dtype == torch.float16 for v in ck["model"].values() if v.is_floating_point())
    res = train(tr, va, tmp_path / "run", replace(cfg, batch_size=16), resume=True, command="test")
    assert [h.epoch for h in res.history] == [1, 2, 3] and res.history[-1].train_loss < res.history[0].train_loss
    hist = json.loads((tmp_path / "run" / "history.json").read_text())["config"]
    assert hist["batch_size"] == 16 and hist["images"] == n_images  # the new machine's batches, the same schedule
    onnx_path = export_onnx(tmp_path / "run" / "best.pt", tmp_path / "v.onnx")
    card = read_card(onnx_path)
    assert card["input"]["size"] == [40, 40] and card["input"]["crop"]["from"] == [48, 48]
    runtime = EmotionModel(onnx_path)
    assert (runtime.spec.width, runtime.spec.crop) == (48, 40)  # faces are aligned at 48 px, the net sees 40
    model, _, _ = load_checkpoint(tmp_path / "run" / "best.pt")
    x = va.images[:6]
    with torch.no_grad():
        ref = torch.softmax(model(normalise(torch.from_numpy(x))[:, :, 4:44, 4:44]), 1).numpy()
    assert np.abs(runtime.predict(list(x)) - ref).max() < 1e-4
    ten = runtime.predict(list(x), tta=True)
    assert ten.shape == (6, 7) and np.allclose(ten.sum(1), 1, atol=1e-5) and np.abs(ten - ref).max() > 1e-4
    assert evaluate(runtime, va, tta=True).n == len(va)
    # analyze's named views give a crop model its ten crops (zoomed views were measured for whole-face models)
    assert np.abs(runtime.predict(list(x), "jitter") - ten).max() < 1e-6
    assert np.abs(runtime.predict(list(x), "mirror") - ten).max() < 1e-6
    assert evaluate(runtime, va, tta="jitter").to_dict()["views"] == "ten-crop"


def test_face_pack_round_trip_and_train_reads_it(tmp_path, capsys):
    from emoreel.model.datasets import load_dataset

    root = write_folder(tmp_path / "ds", synthetic(4), "train")
    write_folder(root, synthetic(2, seed=1), "val")
    assert main(["train", "--data", str(root), "--pack", str(tmp_path / "faces.npz")]) == 0
    assert "faces.npz" in capsys.readouterr().out
    a, b = load_dataset(root, "val"), load_dataset(tmp_path / "faces.npz", "val")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    with pytest.raises(Exception, match="no split 'test'"):
        load_dataset(tmp_path / "faces.npz", "test")


def test_cli_resume_takes_the_network_from_the_checkpoint(tmp_path, capsys, monkeypatch):
    """A run continues on another machine with just --data --out --resume: architecture, widths, crop and
    the image budget come from the checkpoint."""
    ds = write_folder(tmp_path / "ds", synthetic(6), "train")
    write_folder(ds, synthetic(3, seed=1), "val")
    run = tmp_path / "run"
    n = 2 * (42 // 16) * 16
    first = ["train", "--data", str(ds), "--out", str(run), "--arch", "vgg", "--widths", "8,8", "--crop", "40",
             "--images", str(n // 2), "--batch-size", "16", "--threads", "1", "--compact", "--epochs", "5"]
    monkeypatch.setattr(sys, "argv", ["emoreel", *first])
    assert main(first) == 0
    assert "epoch 1/1" in capsys.readouterr().err  # the image budget, not --epochs, sets the length
    again = ["train", "--data", str(ds), "--out", str(run), "--resume", "--images", str(n), "--threads", "1"]
    monkeypatch.setattr(sys, "argv", ["emoreel", *again])
    assert main(again) == 0
    assert "epoch 2/2" in capsys.readouterr().err
    cfg = json.loads((run / "history.json").read_text())["config"]
    assert (cfg["arch"], cfg["widths"], cfg["crop"], cfg["images"]) == ("vgg", [8, 8], 40, n)


def test_distillation_passes_the_teachers_knowledge_on(trained, tmp_path):
    """A student trained on scrambled labels with the distillation loss alone still learns the classes:
    everything it knows came from the teacher (an exported model, run as analyze runs it)."""
    from emoreel.model.training.loop import teacher_targets

    out, res = trained
    teacher = export_onnx(out / "best.pt", tmp_path / "teacher.onnx")
    data, val = synthetic(), synthetic(10, seed=1)
    t = teacher_targets(teacher, data.images, "jitter")
    assert t.shape == (len(data), 7) and np.allclose(t.sum(1), 1, atol=1e-4)
    assert (t.argmax(1) == data.labels).mean() > 0.5
    scrambled = replace(data, labels=np.random.default_rng(0).permutation(data.labels))
    cfg = TrainConfig(epochs=6, distill=str(teacher), distill_weight=1.0, **CFG)
    student = train(scrambled, val, tmp_path / "s", cfg, command="test")
    assert student.best_val_acc > 0.5, student.best_val_acc  # chance is 1/7
    hist = json.loads((tmp_path / "s" / "history.json").read_text())
    assert hist["data"]["distill"]["teacher"] == str(teacher) and hist["data"]["distill"]["views"] == "jitter"
    without = train(scrambled, val, tmp_path / "n", TrainConfig(epochs=6, **CFG), command="test")
    assert without.best_val_acc < student.best_val_acc - 0.2


def test_a_distilled_run_resumes_with_its_teacher_only(trained, tmp_path):
    """Resume keeps distilling with the same teacher (found where it is now), refuses another teacher's
    file and refuses to add distillation to a run that had none."""
    from emoreel.errors import EmoreelError

    out, _ = trained
    teacher = export_onnx(out / "best.pt", tmp_path / "teacher.onnx")
    data, val = synthetic(), synthetic(10, seed=1)

    class Stop(Exception):
        pass

    def stop(entry, total):
        raise Stop

    cfg = TrainConfig(epochs=2, distill=str(teacher), **CFG)
    with pytest.raises(Stop):
        train(data, val, tmp_path / "s", cfg, command="test", on_epoch=stop)
    moved = tmp_path / "elsewhere" / "t.onnx"
    moved.parent.mkdir()
    shutil.move(teacher, moved)
    shutil.move(teacher.with_suffix(".json"), moved.with_suffix(".json"))
    with pytest.raises(EmoreelError, match="not found"):
        train(data, val, tmp_path / "s", replace(cfg, distill=""), resume=True, command="test")
    other = export_onnx(out / "last.pt", tmp_path / "other.onnx")
    with pytest.raises(EmoreelError, match="not the teacher"):
        train(data, val, tmp_path / "s", replace(cfg, distill=str(other)), resume=True, command="test")
    res = train(data, val, tmp_path / "s", replace(cfg, distill=str(moved)), resume=True, command="test")
    assert [h.epoch for h in res.history] == [1, 2]
    plain = tmp_path / "plain"
    with pytest.raises(Stop):
        train(data, val, plain, TrainConfig(epochs=2, **CFG), command="test", on_epoch=stop)
    with pytest.raises(EmoreelError, match="cannot add distillation"):
        train(data, val, plain, cfg, resume=True, command="test")
