"""A tiny ONNX model with the real model's interface, built without torch: p_defect rises with brightness.

logit_defect = (mean pixel - 0.5) * GAIN, logit_ok = 0, ood = constant 1.0. A card sits beside it, as
`partcheck train` writes one, so `OnnxClassifier` loads it through the same checks as the real model.
The card's temperature is 2, not 1 (a fitted one never is 1): the calibrated p_defect is
sigmoid(logit gap / TEMPERATURE) = sigmoid((mean pixel - 0.5) * 20), and a backend that skipped the
division would give other numbers (grey 128: 0.56 calibrated, 0.62 raw).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from services.predict.framing import Framing

SIZE = 64
TEMPERATURE = 2.0
# The raw logit gap per unit of mean brightness; divided by TEMPERATURE it is 20, the calibrated slope.
GAIN = 20.0 * TEMPERATURE


def build(
    directory: Path,
    *,
    t_ok: float = 0.8,
    t_defect: float = 0.8,
    ood_threshold: float = 5.0,
    ood_value: float = 1.0,
    name: str = "tiny",
) -> Path:
    """Write tiny.onnx and tiny.card.json into `directory`; return the ONNX path."""
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sub", ["mean", "half"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["z"]),
        helper.make_node("Unsqueeze", ["z", "axis1"], ["z1"]),
        helper.make_node("Mul", ["z1", "zero"], ["zeros"]),
        helper.make_node("Concat", ["zeros", "z1"], ["logits"], axis=1),
        helper.make_node("Mul", ["z", "zero"], ["z0"]),
        helper.make_node("Add", ["z0", "ood_value"], ["ood"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"),
        numpy_helper.from_array(np.array(GAIN, dtype=np.float32), "gain"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(ood_value, dtype=np.float32), "ood_value"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("ood", TensorProto.FLOAT, ["batch"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    card = {
        "name": name,
        "version": "test-1",
        "created_at": "2026-11-25T00:00:00+00:00",
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "input": {"name": "image", "size": SIZE, "shape": [None, 1, SIZE, SIZE], "dtype": "float32"},
        "labels": ["ok", "defect"],
        "temperature": TEMPERATURE,
        "thresholds": {"t_ok": t_ok, "t_defect": t_defect},
        "ood": {"threshold": ood_threshold},
        "quality": {},
        "command": "tests/services/predict/tiny_model.py",
    }
    (directory / f"{name}.card.json").write_text(json.dumps(card))
    return path


def logit_gap(data: bytes, framing: Framing | None = None) -> float:
    """tiny's raw logit_defect - logit_ok for an image, before the card's temperature is applied."""
    from services.predict.preprocess import preprocess

    return float((preprocess(data, SIZE, framing).mean(dtype=np.float64) - 0.5) * GAIN)


def calibrated_p_defect(
    data: bytes, temperature: float = TEMPERATURE, framing: Framing | None = None
) -> float:
    """sigmoid(logit gap / temperature): the p_defect the backend must report for `data`."""
    return 1.0 / (1.0 + math.exp(-logit_gap(data, framing) / temperature))


def textured(mean: int, seed: int = 0) -> bytes:
    """A usable frame (contrast, sharp lines) with a chosen mean brightness: tiny's verdict follows it."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed * 1000 + mean)
    arr = np.clip(mean + rng.normal(0, 25, (128, 128)), 0, 255).astype(np.uint8)
    arr[::16] = np.clip(mean + 50, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()
