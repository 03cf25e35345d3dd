"""The default classifier: the committed ONNX model, its card, image-quality checks and an OOD score.

Batches: `predict_many(images)` returns one `Prediction | InvalidImage` per input, so one corrupt image
never fails the others; images that decode are run through the model together in one batch.
`predict(images)` (the `Classifier` protocol) raises `InvalidImage` only for a single-image call; for a
batch with bad members it raises `InvalidImage` naming them, after nothing has been lost (callers that need
per-image results use `predict_many`).

A verdict needs all of: the image decodes (else InvalidImage), passes the quality checks (else `unclear`
with the reason), is in distribution (OOD score under the card's threshold, else `unclear`), and its
temperature-scaled p_defect clears the band (else `unclear`, "below threshold").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from partcheck.errors import InvalidImage, ModelError
from partcheck.messages import Prediction
from partcheck.thresholds import Thresholds
from services.predict import quality
from services.predict.core import BELOW_BAND, OUT_OF_DISTRIBUTION, all_or_raise
from services.predict.framing import Framing
from services.predict.preprocess import preprocess
from services.predict.quality import SceneModel

CARD_SUFFIX = ".card.json"
log = logging.getLogger(__name__)


def card_path_for(model_path: Path) -> Path:
    """`models/x.onnx` -> `models/x.card.json`."""
    return model_path.with_name(model_path.stem + CARD_SUFFIX)


def save_card(card_path: Path, card: dict[str, Any]) -> None:
    """Write a card whole or not at all (a temporary file renamed over it): never half a card."""
    tmp = card_path.with_name(f".{card_path.name}.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, card_path)


@dataclass(frozen=True)
class ModelCard:
    """The parts of the card inference needs; `raw` keeps everything else (metrics, training data)."""

    name: str
    version: str
    sha256: str
    size: int
    temperature: float
    thresholds: Thresholds
    ood_threshold: float | None
    quality: quality.QualityLimits
    scene: SceneModel | None
    framing: Framing | None
    raw: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        """Read and validate a card, raising ModelError with the reason."""
        if not path.is_file():
            raise ModelError(f"model card {path} not found (it must sit beside the ONNX file)")
        try:
            raw = json.loads(path.read_text())
            thresholds = raw["thresholds"]
            ood = raw.get("ood") or {}
            card = cls(
                name=str(raw["name"]),
                version=str(raw["version"]),
                sha256=str(raw["sha256"]).lower(),
                size=int(raw["input"]["size"]),
                temperature=float(raw["temperature"]),
                thresholds=Thresholds(t_ok=float(thresholds["t_ok"]), t_defect=float(thresholds["t_defect"])),
                ood_threshold=float(ood["threshold"]) if ood.get("threshold") is not None else None,
                quality=quality.QualityLimits.from_dict(raw.get("quality")),
                scene=quality.SceneModel.from_dict(raw.get("scene")),
                framing=_framing(raw["input"].get("framing")),
                raw=raw,
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model card {path} is malformed: {exc!r}") from exc
        if card.temperature <= 0 or card.size < 16:
            raise ModelError(f"model card {path} has an invalid temperature or input size")
        return card


def _framing(section: Any) -> Framing | None:
    """The card's `input.framing`: None (centre square) for cards written before it existed."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ValueError(f"input.framing must be an object, not {type(section).__name__}")
    return Framing.from_dict(section)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_sha256(model_path: Path, expected: str, data: bytes | None = None) -> None:
    """Raise ModelError unless the file's sha256 (or that of `data`, its bytes) is the card's."""
    actual = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(model_path)
    if actual != expected.lower():
        raise ModelError(
            f"{model_path} does not match its card: sha256 {actual[:16]}... != card "
            f"{expected[:16]}...; refusing a model the card does not describe"
        )


class OnnxClassifier:
    """ONNX Runtime classifier loaded once per process; thread-compatible for inference."""

    def __init__(
        self,
        model_path: Path,
        *,
        thresholds: Thresholds | None = None,
        threads: int = 1,
        card_path: Path | None = None,
    ) -> None:
        import onnxruntime as ort

        model_path = Path(model_path)
        if not model_path.is_file():
            raise ModelError(
                f"model file {model_path} not found; train one with `partcheck train` "
                "or set PARTCHECK_PREDICT_MODEL_PATH"
            )
        self.card = ModelCard.load(card_path or card_path_for(model_path))
        # The bytes checked are the bytes loaded: a file replaced between the two cannot slip through.
        model_bytes = model_path.read_bytes()
        check_sha256(model_path, self.card.sha256, model_bytes)
        options = ort.SessionOptions()
        # One thread per session by default: the workers scale by processes, and latency is per image.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for a broken graph
            raise ModelError(f"onnxruntime cannot load {model_path}: {exc}") from exc
        inputs = self._session.get_inputs()
        outputs = [o.name for o in self._session.get_outputs()]
        if len(inputs) != 1 or "logits" not in outputs:
            raise ModelError(
                f"{model_path} has unexpected inputs/outputs {[i.name for i in inputs]} -> {outputs}"
            )
        self._input = inputs[0].name
        self._has_ood = "ood" in outputs
        self.name = self.card.name
        self.version = self.card.version
        self.thresholds = thresholds or self.card.thresholds
        self.model_path = model_path

    def predict(self, images: Sequence[bytes]) -> list[Prediction]:
        """Classify a batch; raises InvalidImage if any member cannot be decoded (see module docstring)."""
        return all_or_raise(self.predict_many(images))

    def predict_many(self, images: Sequence[bytes]) -> list[Prediction | InvalidImage]:
        """One Prediction or InvalidImage per input, in order; a bad image never fails the others."""
        size = self.card.size
        results: list[Prediction | InvalidImage | None] = [None] * len(images)
        arrays: list[np.ndarray] = []
        pending: list[tuple[int, dict[str, float]]] = []
        for i, data in enumerate(images):
            t0 = time.perf_counter()
            try:
                x = preprocess(data, size, self.card.framing)
            except InvalidImage as exc:
                results[i] = exc
                continue
            except MemoryError:
                raise  # the process's shortage, not the image's fault: the batch is retried
            except Exception as exc:
                # Decoding depends on these bytes alone; a failure is this image's, never the batch's.
                log.exception("image %d of a batch could not be decoded", i)
                results[i] = InvalidImage(f"image could not be decoded: {type(exc).__name__}: {exc}")
                continue
            t1 = time.perf_counter()
            try:
                v = quality.view(x)
                reason = quality.check(v, self.card.quality) or quality.check_scene(v, self.card.scene)
            except MemoryError:
                raise
            except Exception as exc:
                # A decoded image the checks cannot handle points at this service (a bad card, a bug), not
                # at the photo: an inspector sees it in unclear/ instead of it vanishing into rejected/.
                log.exception("the checks failed on image %d of a batch", i)
                reason = f"checks could not run: {type(exc).__name__}: {exc}"
            t2 = time.perf_counter()
            timings = {"preprocess": (t1 - t0) * 1000, "quality": (t2 - t1) * 1000}
            if reason is not None:
                results[i] = self._unclear(reason, timings)
                continue
            arrays.append(x)
            pending.append((i, timings))
        if arrays:
            t0 = time.perf_counter()
            logits, ood = self._run(np.stack(arrays)[:, None])
            per_image = (time.perf_counter() - t0) * 1000 / len(arrays)
            for (i, timings), lg, od in zip(pending, logits, ood, strict=True):
                results[i] = self._decide(lg, od, {**timings, "inference": per_image})
        return [r for r in results if r is not None]

    def model_p_defect(self, images: Sequence[bytes]) -> list[float | None]:
        """The network's calibrated p_defect with no quality, scene or OOD gate; None if undecodable.

        For evaluation only: "accuracy without abstaining" is the network's top label on every photo,
        including the few the gates would send to an inspector. Production verdicts go through `predict_many`.
        """
        arrays: list[np.ndarray] = []
        index: list[int] = []
        out: list[float | None] = [None] * len(images)
        for i, data in enumerate(images):
            try:
                arrays.append(preprocess(data, self.card.size, self.card.framing))
            except InvalidImage:
                continue
            index.append(i)
        if arrays:
            logits, _ = self._run(np.stack(arrays)[:, None])
            for i, lg in zip(index, logits, strict=True):
                out[i] = self._p_defect(lg)
        return out

    def _p_defect(self, logits: np.ndarray) -> float:
        z = float(logits[1] - logits[0]) / self.card.temperature
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))))

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = self._session.run(None, {self._input: batch.astype(np.float32, copy=False)})
        names = [o.name for o in self._session.get_outputs()]
        logits = np.asarray(outputs[names.index("logits")], dtype=np.float64)
        ood = (
            np.asarray(outputs[names.index("ood")], dtype=np.float64)
            if self._has_ood
            else np.full(len(logits), np.nan)
        )
        return logits, ood

    def _decide(self, logits: np.ndarray, ood: float, timings: dict[str, float]) -> Prediction:
        p_defect = self._p_defect(logits)
        confidence = max(p_defect, 1.0 - p_defect)
        ood_score = None if np.isnan(ood) else float(ood)
        threshold = self.card.ood_threshold
        if ood_score is not None and threshold is not None and ood_score > threshold:
            return self._prediction(
                "unclear",
                confidence,
                p_defect,
                timings,
                ood_score,
                f"{OUT_OF_DISTRIBUTION}: not like the training parts "
                f"(OOD score {ood_score:.2f} > {threshold:.2f})",
            )
        label = self.thresholds.decide(p_defect)
        reason = None
        if label == "unclear":
            top = "defect" if p_defect >= 0.5 else "ok"
            limit = self.thresholds.t_defect if top == "defect" else self.thresholds.t_ok
            reason = f"{BELOW_BAND}: p_{top} {confidence:.4f} < {limit:.4f}"
        return self._prediction(label, confidence, p_defect, timings, ood_score, reason)

    def _unclear(self, reason: str, timings: dict[str, float]) -> Prediction:
        # No model output exists for a rejected frame: p_defect 0.5 / confidence 0.5 say "no information".
        return self._prediction("unclear", 0.5, 0.5, timings, None, reason)

    def _prediction(
        self,
        label: str,
        confidence: float,
        p_defect: float,
        timings: dict[str, float],
        ood_score: float | None,
        reason: str | None,
    ) -> Prediction:
        return Prediction.model_validate(
            {
                "label": label,
                "confidence": min(max(confidence, 0.0), 1.0),
                "p_defect": min(max(p_defect, 0.0), 1.0),
                "model_name": self.name,
                "model_version": self.version,
                "thresholds": self.thresholds,
                "reason": reason,
                "ood_score": ood_score,
                "timings_ms": {k: round(v, 4) for k, v in timings.items()},
            }
        )
