"""Evaluation through the onnxruntime runtime: metrics, JSON, text, PNG, model card, CLI.

The models here are hand-built ONNX graphs (no torch): logits = W . normalised pixels,
so what each face is predicted as is known exactly, and with it the confusion matrix.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import emoreel.model.evaluate as ev
from emoreel.cli import main
from emoreel.errors import ModelError, OutputError
from emoreel.model.datasets import LabelledFaces
from emoreel.model.emotion import EmotionModel, read_card, sha256_file, write_card
from emoreel.model.evaluate import EvalResult, evaluate, write_card_metrics
from emoreel.types import EMOTIONS

SHARED_ZIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fer2013-train-val.zip"
BAND = 6  # class k <-> bright rows 6k .. 6k+5


def linear_onnx(path: Path, weights: np.ndarray, classes=EMOTIONS) -> Path:
    """ONNX model: Flatten -> MatMul(weights (2304, C)), with a card (grey 48x48, mean 0.5, std 0.25)."""
    w = numpy_helper.from_array(weights.astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "W"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 48, 48])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weights.shape[1]])],
        initializer=[w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    card = {
        "name": path.stem,
        "classes": list(classes),
        "input": {"name": "input", "size": [48, 48], "colour": "grey", "layout": "NCHW", "scale": 1 / 255, "mean": [0.5], "std": [0.25]},
        "output": {"name": "logits", "kind": "logits"},
        "training": {"command": "hand-built"},
    }
    write_card(path, card)
    return path


def band_weights(classes=EMOTIONS) -> np.ndarray:
    """Logit of a class = mean of its band of rows (as EMOTIONS index), so the brightest band wins."""
    w = np.zeros((48, 48, len(classes)), np.float32)
    for j, name in enumerate(classes):
        k = EMOTIONS.index(name)
        w[BAND * k : BAND * (k + 1), :, j] = 1.0 / (BAND * 48)
    return w.reshape(48 * 48, len(classes))


def band_face(k: int, rng) -> np.ndarray:
    img = rng.integers(0, 40, (48, 48)).astype(np.uint8)
    img[BAND * k : BAND * (k + 1)] = 230
    return img


# (true label, bright band) -> every face's prediction is its bright band
CASES = [(k, k) for k in range(7) if k != 1 for _ in range(4)] + [(0, 3), (0, 3), (4, 6)]
EXPECTED = np.zeros((7, 7), int)
for t, b in CASES:
    EXPECTED[t, b] += 1


def band_data(cases=CASES, seed=0) -> LabelledFaces:
    rng = np.random.default_rng(seed)
    return LabelledFaces(
        np.stack([band_face(b, rng) for _, b in cases]), np.array([t for t, _ in cases], np.int64), source="bands"
    )


@pytest.fixture
def band_model(tmp_path) -> Path:
    return linear_onnx(tmp_path / "bands.onnx", band_weights())


def write_folder(root: Path, data: LabelledFaces, split="val") -> Path:
    for i, (img, lab) in enumerate(zip(data.images, data.labels)):
        d = root / split / data.classes[lab]
        d.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(d / f"{i}.png"), img)
    return root


def test_confusion_and_metrics_are_exact(band_model):
    res = evaluate(band_model, band_data())
    assert res.confusion == EXPECTED.tolist()
    assert res.n == len(CASES) == 27
    assert res.accuracy == pytest.approx(24 / 27)
    pc = res.per_class
    assert list(pc) == list(EMOTIONS)
    assert pc["angry"] == {"precision": 1.0, "recall": round(4 / 6, 4), "f1": round(0.8, 4), "support": 6}
    assert pc["happy"]["precision"] == round(4 / 6, 4) and pc["happy"]["recall"] == 1.0
    assert pc["sad"]["recall"] == 0.8 and pc["neutral"]["precision"] == 0.8
    assert pc["disgust"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}  # no faces, never predicted


def test_json_keys_and_consistency(band_model):
    d = json.loads(evaluate(band_model, band_data()).to_json())
    assert {"accuracy", "n", "classes", "per_class", "confusion"} <= set(d)
    conf = np.array(d["confusion"])
    assert conf.shape == (7, 7) and conf.sum() == d["n"]
    assert np.trace(conf) / d["n"] == pytest.approx(d["accuracy"], abs=5e-5)
    assert [d["per_class"][c]["support"] for c in d["classes"]] == conf.sum(1).tolist()
    assert d["classes"] == list(EMOTIONS) and d["data"] == "bands" and d["model"] == "bands"


def test_model_class_order_is_mapped_to_the_data(tmp_path):
    shuffled = tuple(reversed(EMOTIONS))
    model = linear_onnx(tmp_path / "rev.onnx", band_weights(shuffled), shuffled)
    res = evaluate(model, band_data())
    assert res.classes == EMOTIONS and res.confusion == EXPECTED.tolist()


def test_model_without_a_data_class_is_refused(tmp_path):
    five = EMOTIONS[:5]
    model = linear_onnx(tmp_path / "five.onnx", band_weights(five), five)
    with pytest.raises(ModelError, match="lacks classes surprise, neutral"):
        evaluate(model, band_data())


def test_tta_averages_with_the_mirror(tmp_path):
    rng = np.random.default_rng(1)
    model = EmotionModel(linear_onnx(tmp_path / "rand.onnx", rng.normal(0, 0.05, (2304, 7))))
    faces = list(rng.integers(0, 256, (5, 48, 48)).astype(np.uint8))
    both = model.predict(faces, tta=True)
    mirrored = model.predict([f[:, ::-1].copy() for f in faces])
    assert np.allclose(both, (model.predict(faces) + mirrored) / 2, atol=1e-6)
    assert not np.allclose(mirrored, model.predict(faces), atol=1e-3)  # the mirror does change this model's output
    data = LabelledFaces(np.stack(faces), np.zeros(5, np.int64))
    res = evaluate(model, data, tta=True)
    assert res.tta and res.n == 5 and res.confusion[0][int(np.argmax(both[0]))] >= 1


def test_predictions_come_in_batches(band_model, monkeypatch):
    data = band_data()
    model = EmotionModel(band_model)
    sizes = []
    real = model.predict
    monkeypatch.setattr(model, "predict", lambda crops, tta=False: sizes.append(len(crops)) or real(crops, tta))
    probs = ev.predict_dataset(model, data, batch=10)
    assert sizes == [10, 10, 7] and probs.shape == (27, 7)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)


def test_text_rendering(band_model):
    text = evaluate(band_model, band_data()).text()
    assert text.startswith("accuracy 0.8889 on 27 faces")
    rows = text.splitlines()
    angry = next(r for r in rows[rows.index("confusion (rows = true, columns = predicted)") :] if r.startswith("angry"))
    assert [int(v) for v in angry.split()[1:]] == EXPECTED[0].tolist()
    assert "surprise" in rows[rows.index("confusion (rows = true, columns = predicted)") + 1]  # full column names


def test_plot_confusion_png(band_model, tmp_path):
    res = evaluate(band_model, band_data())
    out = res.plot_confusion(tmp_path / "conf.png")
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 7 * 60 and img.shape[1] > 7 * 60
    # shaded cells: a full-row diagonal cell is dark, an empty cell white
    dark = (img.sum(2) < 300).mean()
    white = (img.min(2) == 255).mean()
    assert dark > 0.02 and white > 0.3
    with pytest.raises(OutputError, match="cannot write"):
        res.plot_confusion(tmp_path / "no-such-dir" / "conf.png")


def test_write_card_metrics(band_model):
    before = read_card(band_model)
    res = evaluate(band_model, band_data())
    write_card_metrics(band_model, res, {"data": "bands.zip", "split": "val"}, evaluate(band_model, band_data(), tta=True))
    card = read_card(band_model)
    e = card["evaluation"]
    assert e["val_accuracy"] == round(24 / 27, 4) and e["n"] == 27 and e["data"] == "bands.zip" and e["split"] == "val"
    assert e["per_class_recall"]["angry"] == round(4 / 6, 4) and e["val_accuracy_tta"] == e["val_accuracy"]
    assert e["confusion"] == EXPECTED.tolist() and len(e["date"]) == 10
    assert card["sha256"] == sha256_file(band_model) and card["training"] == before["training"]


def test_eval_result_validates_shape():
    with pytest.raises(ValueError):
        EvalResult(("a", "b"), [[1, 2, 3]])
    empty = EvalResult(("a", "b"), [[0, 0], [0, 0]])
    assert empty.n == 0 and empty.accuracy == 0.0


def test_cli_evaluate_json_prints_one_object(band_model, tmp_path, capsys):
    root = write_folder(tmp_path / "ds", band_data())
    png = tmp_path / "c.png"
    rc = main(["evaluate", "--data", str(root), "--model", str(band_model), "--json", "--plot", str(png)])
    out = capsys.readouterr().out
    assert rc == 0 and len(out.strip().splitlines()) == 1
    d = json.loads(out)  # exactly one object: json.loads refuses trailing data
    assert d["confusion"] == EXPECTED.tolist() and d["n"] == 27 and d["accuracy"] == round(24 / 27, 4)
    assert cv2.imread(str(png)) is not None


def test_cli_evaluate_text_and_tta(band_model, tmp_path, capsys):
    root = write_folder(tmp_path / "ds", band_data())
    assert main(["evaluate", "--data", str(root), "--model", str(band_model), "--tta"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("accuracy 0.8889 on 27 faces (with mirror TTA)")
    assert "27 faces from" in captured.err


def test_cli_evaluate_without_a_shipped_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ev, "default_model_path", lambda: tmp_path / "models" / "emoreel-fer.onnx")
    root = write_folder(tmp_path / "ds", band_data())
    assert main(["evaluate", "--data", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("emoreel: error: no shipped emotion model")


def test_cli_evaluate_defaults_to_the_shipped_model(band_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ev, "default_model_path", lambda: band_model)
    root = write_folder(tmp_path / "ds", band_data())
    assert main(["evaluate", "--data", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "bands"


def test_cli_evaluate_missing_model_file(tmp_path, capsys):
    root = write_folder(tmp_path / "ds", band_data())
    assert main(["evaluate", "--data", str(root), "--model", str(tmp_path / "nope.onnx")]) == 2
    assert "not found" in capsys.readouterr().err


def _shipped_card():
    from emoreel.model.emotion import default_model_path

    try:
        return read_card(default_model_path())
    except ModelError:
        return {}


@pytest.mark.skipif(not SHARED_ZIP.exists(), reason="../shared/data/fer2013-train-val.zip not present")
@pytest.mark.skipif("evaluation" not in _shipped_card(), reason="the shipped model's card has no evaluation yet")
def test_shipped_model_reproduces_its_card(capsys):
    """`emoreel evaluate --data <val>` gives exactly the accuracy written in the shipped card."""
    e = _shipped_card()["evaluation"]
    if e.get("data_sha256") and e["data_sha256"] != sha256_file(SHARED_ZIP):
        pytest.skip("the card was evaluated on other data")
    assert main(["evaluate", "--data", str(SHARED_ZIP), "--split", e.get("split", "val"), "--json", "--views", "single"]) == 0  # the card: one view
    d = json.loads(capsys.readouterr().out)
    assert d["n"] == e["n"] and d["accuracy"] == e["val_accuracy"] and d["confusion"] == e["confusion"]


def test_cli_evaluate_measures_analyzes_views_by_default(band_model, tmp_path, capsys):
    """Crops are scored with analyze's test-time views unless told otherwise; --no-tta gives the network's
    own number (the model card's), --tta the mirror alone; contradicting flags are one line, exit 2."""
    root = write_folder(tmp_path / "ds", band_data())
    base = ["evaluate", "--data", str(root), "--model", str(band_model), "--json"]
    for extra, views in [([], "jitter"), (["--no-tta"], "single"), (["--tta"], "mirror"), (["--views", "mirror"], "mirror")]:
        assert main(base + extra) == 0
        assert json.loads(capsys.readouterr().out)["views"] == views, extra
    assert main(base + ["--no-tta", "--views", "jitter"]) == 2
    assert "contradict" in capsys.readouterr().err
