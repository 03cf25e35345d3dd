"""Checks of an exported model through the production path (bytes -> OnnxClassifier), written into its card.

- the validation split as stored (the proxy for the held-out set);
- re-framed and re-scaled copies of it (`variants.VARIANTS`: part filling 70-100 % of a 224-640 px frame);
- synthetic inputs that are not a usable part photo: blank, black, noise, over- and under-exposed and
  blurred copies of validation photos, and other objects (drawn shapes, text, matplotlib's sample photos).
  These are for checking only; nothing is tuned on them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from partcheck.errors import InvalidImage
from services.predict.onnx_backend import OnnxClassifier, card_path_for
from services.predict.train import data
from services.predict.train.evaluate import EvalResult, Row
from services.predict.train.variants import VARIANTS, reframe


def _jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _evaluate(clf: OnnxClassifier, labelled: list[tuple[str, int, bytes]], name: str) -> dict[str, Any]:
    result = EvalResult(clf.name, clf.version, clf.thresholds.model_dump(), name)
    for path, label, payload in labelled:
        out = clf.predict_many([payload])[0]
        if isinstance(out, InvalidImage):
            result.rows.append(Row(path, label, "rejected", None, None, str(out), 0.0))
            continue
        model_p = out.p_defect if out.reason is None or out.reason.startswith(("below", "out of")) else None
        result.rows.append(Row(path, label, out.label, model_p, out.ood_score, out.reason, 0.0))
    s = result.summary()
    keep = (
        "n",
        "accuracy",
        "f1",
        "escapes",
        "false_rejects",
        "unclear",
        "unclear_rate",
        "rejected",
        "decided_accuracy",
        "ece",
    )
    return {k: s[k] for k in keep}


def synthetic_ood(val_photos: list[bytes], seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """(kind, JPEG bytes) of frames that must never get an ok/defect verdict."""
    rng = np.random.default_rng(seed)
    for v in (0, 6, 128, 200, 250, 255):
        yield "blank", _jpeg(Image.new("L", (300, 300), v))
    for _ in range(10):
        yield "uniform noise", _jpeg(Image.fromarray(rng.integers(0, 256, (300, 300), dtype=np.uint8)))
        g = np.clip(rng.normal(128, 40, (300, 300)), 0, 255).astype(np.uint8)
        yield "gaussian noise", _jpeg(Image.fromarray(g))
    for i, photo in enumerate(val_photos[:20]):
        arr = np.asarray(Image.open(io.BytesIO(photo)).convert("L"), dtype=np.float32)
        over = np.clip(arr * 3.0 + 120, 0, 255).astype(np.uint8)
        yield "over-exposed photo", _jpeg(Image.fromarray(over))
        under = np.clip(arr * 0.08, 0, 255).astype(np.uint8)
        yield "under-exposed photo", _jpeg(Image.fromarray(under))
        blurred = Image.fromarray(arr.astype(np.uint8)).filter(ImageFilter.GaussianBlur(8 + i % 4))
        yield "badly blurred photo", _jpeg(blurred)
    for i in range(10):
        img = Image.new("L", (300, 300), int(rng.integers(40, 220)))
        draw = ImageDraw.Draw(img)
        for _ in range(8):
            x0, y0 = (int(v) for v in rng.integers(0, 250, 2))
            w, h = (int(v) for v in rng.integers(20, 120, 2))
            shape = draw.rectangle if (i + _) % 2 else draw.ellipse
            shape((x0, y0, x0 + w, y0 + h), fill=int(rng.integers(0, 256)))
        yield "drawn shapes", _jpeg(img)
        text = Image.new("L", (300, 300), 235)
        ImageDraw.Draw(text).multiline_text((10, 10), "\n".join(["INVOICE 2026 partcheck"] * 12), fill=20)
        yield "text page", _jpeg(text)
        checker = ((np.indices((300, 300)) // (10 + 5 * i)).sum(axis=0) % 2 * 255).astype(np.uint8)
        yield "checkerboard", _jpeg(Image.fromarray(checker))
    yield from _matplotlib_samples()


def _matplotlib_samples() -> Iterator[tuple[str, bytes]]:
    """Real photos of other things that ship with matplotlib, when it is installed."""
    try:
        import matplotlib
    except ImportError:
        return
    folder = Path(matplotlib.get_data_path()) / "sample_data"
    for path in sorted(folder.glob("*")):
        if path.suffix.lower() in (".jpg", ".png"):
            try:
                img = Image.open(path)
                img.load()
            except OSError:
                continue
            yield f"photo of something else ({path.name})", _jpeg(img)


def validate_model(model_path: Path, data_dir: Path, val_fraction: float) -> dict[str, Any]:
    """Measure the exported model on validation, re-framed copies and synthetic OOD; update its card."""
    clf = OnnxClassifier(model_path)
    items = data.list_items(data_dir)
    _, val_items = data.split(items, val_fraction)
    photos = [(str(it.path), it.label, it.path.read_bytes()) for it in val_items]
    metrics: dict[str, Any] = {"validation_onnx": _evaluate(clf, photos, "validation")}
    reframed: dict[str, Any] = {}
    for v in VARIANTS:
        copies = [(p, label, reframe(b, v, seed=i)) for i, (p, label, b) in enumerate(photos)]
        reframed[v.name] = _evaluate(clf, copies, v.name)
    metrics["reframed"] = reframed
    ood: dict[str, dict[str, int]] = {}
    for kind, payload in synthetic_ood([b for _, _, b in photos]):
        key = kind.split(" (")[0]
        counts = ood.setdefault(
            key,
            {
                "n": 0,
                "verdict": 0,
                "unclear_quality": 0,
                "unclear_ood": 0,
                "unclear_threshold": 0,
                "rejected": 0,
            },
        )
        counts["n"] += 1
        out = clf.predict_many([payload])[0]
        if isinstance(out, InvalidImage):
            counts["rejected"] += 1
        elif out.label != "unclear":
            counts["verdict"] += 1
        elif (out.reason or "").startswith("out of"):
            counts["unclear_ood"] += 1
        elif (out.reason or "").startswith("below"):
            counts["unclear_threshold"] += 1
        else:
            counts["unclear_quality"] += 1
    metrics["synthetic_ood"] = ood
    card_path = card_path_for(model_path)
    card = json.loads(card_path.read_text())
    card.setdefault("metrics", {}).update(metrics)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return metrics
