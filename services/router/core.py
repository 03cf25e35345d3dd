"""Pure core of the router: where an image goes and what it carries with it."""

from __future__ import annotations

import posixpath
from datetime import UTC, datetime
from urllib.parse import quote

from partcheck.layout import Route, cut_escaped, fit_metadata, routed_key
from partcheck.messages import Prediction, PredictionMessage
from partcheck.thresholds import Thresholds

# S3 user metadata travels as HTTP headers: ASCII only, and the whole set must stay under 2 KB.
_MAX_META_VALUE = 256
# Descriptive values that may be shortened to stay within S3's metadata limit; the others identify the
# image and its verdict.
_SHORTENABLE = ("reason", "source-key", "model-name", "model-version", "line", "camera", "capture-time")


def route_for(prediction: Prediction | None, thresholds: Thresholds | None = None) -> Route:
    """The prefix an image belongs under; `None` is an image that could not be read at all."""
    if prediction is None:
        return Route.REJECTED
    if prediction.label == "unclear":
        return Route.UNCLEAR
    band = thresholds or prediction.thresholds
    verdict = band.decide(prediction.p_defect)
    # A stricter band at the router can only turn a verdict into unclear, never flip it.
    if verdict != prediction.label:
        return Route.UNCLEAR
    return Route.OKAY if verdict == "ok" else Route.DEFECT


def destination_key(key: str, prediction: Prediction | None, thresholds: Thresholds | None = None) -> str:
    """The prediction-bucket key of an inbound object: `<route>/<original relative key>`."""
    return routed_key(route_for(prediction, thresholds), key)


def alternate_key(key: str, etag: str) -> str:
    """A second name for a different image that arrived under an already-used key."""
    stem, ext = posixpath.splitext(key)
    return f"{stem}~{etag[:12]}{ext}"


def _meta(value: object) -> str:
    # Cut on a whole escape and character: `%C3%A4` cut to `%C3%` would not decode back.
    return cut_escaped(quote(str(value), safe=" :/-_.,=+@"), _MAX_META_VALUE)


def object_metadata(message: PredictionMessage, thresholds: Thresholds | None = None) -> dict[str, str]:
    """S3 user metadata for the sorted object: the model's verdict and the upload's provenance."""
    meta: dict[str, str] = {
        "source-key": message.key,
        "source-bucket": message.bucket,
        "source-etag": message.etag or "",
        "uploaded-at": message.event_time or message.predicted_at,
        "predicted-at": message.predicted_at,
        "sorted-at": datetime.now(UTC).isoformat(),
    }
    for name in ("line", "camera", "capture-time", "sha256"):
        if name in message.metadata:
            meta[name] = message.metadata[name]
    p = message.prediction
    if p is None:
        meta["reason"] = message.rejection_reason or "unreadable"
    else:
        band = thresholds or p.thresholds
        meta.update(
            {
                "model-label": p.label,
                "confidence": f"{p.confidence:.6f}",
                "p-defect": f"{p.p_defect:.6f}",
                "model-name": p.model_name,
                "model-version": p.model_version,
                "t-ok": f"{band.t_ok:.6f}",
                "t-defect": f"{band.t_defect:.6f}",
            }
        )
        if p.reason:
            meta["reason"] = p.reason
        if "classify" in message.timings_ms:
            meta["predict-ms"] = f"{message.timings_ms['classify']:.3f}"
        if p.ood_score is not None:
            meta["ood-score"] = f"{p.ood_score:.6f}"
    # Each value is capped, but enough long ones together would still exceed S3's limit.
    return fit_metadata({k: _meta(v) for k, v in meta.items()}, _SHORTENABLE)
