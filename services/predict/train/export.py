"""ONNX export with a dynamic batch axis, and the torch/onnxruntime agreement check."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from services.predict.train.model import Exported

# Export and the graph's opset; onnxruntime >= 1.18 runs it.
OPSET = 17
TOLERANCE = 1e-3


def export_onnx(model: Exported, size: int, path: Path, sample: np.ndarray) -> float:
    """Write the model to `path`; return the largest torch/onnxruntime difference over `sample` (uint8 NxSxS).

    Each output's difference is taken relative to its largest magnitude (at least 1): float32 sums taken in
    another order (onnxruntime fuses BatchNorm into the convolutions) differ in proportion to the values.
    """
    import onnx
    import onnxruntime as ort

    model.eval()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which needs onnxscript; it still works.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, size, size),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=["logits", "ood"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "ood": {0: "batch"}},
        )
    onnx.checker.check_model(onnx.load(str(path)))
    x = sample.astype(np.float32)[:, None] / np.float32(255.0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ort_logits, ort_ood = session.run(None, {"image": x})
    with torch.no_grad():
        t_logits, t_ood = model(torch.from_numpy(x))
    # Measured absolutely, a seed-1 run failed here after 10 minutes of training with 2.5e-3, where logits
    # reach ~6 (the shipped model's, on these images): far below anything that moves a decision.
    diff = max(_relative_diff(ort_logits, t_logits.numpy()), _relative_diff(ort_ood, t_ood.numpy()))
    if diff > TOLERANCE:
        raise RuntimeError(f"ONNX and torch disagree by {diff:.2e} (> {TOLERANCE})")
    return diff


def _relative_diff(got: np.ndarray, want: np.ndarray) -> float:
    """Largest |got - want| over the largest |want| (at least 1)."""
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1.0))
