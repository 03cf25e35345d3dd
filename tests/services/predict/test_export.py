"""ONNX export: float16 conv weights halve the file and keep torch and onnxruntime in step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from services.predict.train.export import TOLERANCE, export_onnx  # noqa: E402
from services.predict.train.model import Exported, PartNet, fit_mahalanobis, fold_for_export  # noqa: E402

pytestmark = pytest.mark.unit

SIZE = 96


def _exported(fp16: bool) -> Exported:
    torch.manual_seed(0)
    net = PartNet((8, 16, 32, 64, 64), 1, True, "avgmax", 3, 5).eval()
    net = fold_for_export(net, fp16_weights=fp16)
    with torch.no_grad():
        feats = net.features(torch.rand(40, 1, SIZE, SIZE))
    means, precision = fit_mahalanobis(feats, torch.tensor([0, 1] * 20))
    return Exported(net, means, precision).eval()


def _sample() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (8, SIZE, SIZE), dtype=np.uint8)


def test_fp16_weights_halve_the_conv_weights_and_agree_with_torch(tmp_path: Path) -> None:
    plain, half = tmp_path / "plain.onnx", tmp_path / "half.onnx"
    export_onnx(_exported(False), SIZE, plain, _sample())
    diff = export_onnx(_exported(True), SIZE, half, _sample(), fp16_weights=True)
    # The torch side was rounded the same way, so only float32 summation order separates them.
    assert diff < TOLERANCE / 10
    graph = onnx.load(str(half)).graph
    conv_weights = {n.input[1] for n in graph.node if n.op_type == "Conv"}
    casts = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Cast"}
    assert conv_weights
    assert conv_weights <= set(casts)
    stored = {i.name: i.data_type for i in graph.initializer}
    assert all(stored[casts[w]] == onnx.TensorProto.FLOAT16 for w in conv_weights)
    assert stored["precision"] == onnx.TensorProto.FLOAT  # the OOD matrix keeps full precision
    plain_inits = onnx.load(str(plain)).graph.initializer
    conv_bytes = sum(onnx.numpy_helper.to_array(i).nbytes for i in plain_inits if i.name in conv_weights)
    assert half.stat().st_size < plain.stat().st_size - conv_bytes * 0.45


def test_fp16_file_runs_in_float32_and_matches_its_torch_model(tmp_path: Path) -> None:
    model = _exported(True)
    path = tmp_path / "half.onnx"
    export_onnx(model, SIZE, path, _sample(), fp16_weights=True)
    x = _sample().astype(np.float32)[:, None] / np.float32(255)
    logits, ood = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    assert logits.dtype == np.float32
    with torch.no_grad():
        t_logits, t_ood = model(torch.from_numpy(x))
    np.testing.assert_allclose(logits, t_logits.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ood, t_ood.numpy(), rtol=1e-3, atol=1e-4)
