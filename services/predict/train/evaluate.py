"""`partcheck evaluate`: a model on a def_front/ + ok_front/ folder, through the same path as production.

Every image goes through `OnnxClassifier.predict_many` one at a time (bytes -> verdict, so the latency is
what a worker sees). Metrics:
- `accuracy`, `precision`, `recall`, `f1` (defect is positive): the network's top label without abstaining,
  on every image that decodes, including those the quality and scene checks send to `unclear/`
  (`refused_by_checks` counts them); an image that does not decode (rejected) counts as wrong;
- `escapes` (defect called ok), `false_rejects` (ok called defect), `unclear`, `rejected` at the thresholds;
- `decided_accuracy`: accuracy among images that got ok/defect;
- `confusion`: rows = truth (ok, defect), columns = verdict (ok, defect, unclear, rejected).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from partcheck.errors import InvalidImage
from services.predict.core import OUT_OF_DISTRIBUTION, refused_by_checks
from services.predict.onnx_backend import OnnxClassifier
from services.predict.train.calibrate import (
    choose_thresholds,
    ece,
    margin_risk,
    reliability,
    require_band,
    risk_coverage,
    score,
)
from services.predict.train.data import LABELS, scan_folder

VERDICTS = ("ok", "defect", "unclear", "rejected")
_LISTED = 20  # skipped files named in the summary; the count covers all


@dataclass
class Row:
    """One evaluated image."""

    path: str
    truth: int
    verdict: str
    p_defect: float | None
    ood_score: float | None
    reason: str | None
    latency_ms: float


@dataclass
class EvalResult:
    """All rows plus the model identity; `summary()` computes the metrics."""

    model_name: str
    model_version: str
    thresholds: dict[str, float]
    data_dir: str
    rows: list[Row] = field(default_factory=list)
    # Files under the class folders that are not images (hidden or no image suffix), relative paths.
    skipped: list[str] = field(default_factory=list)
    missing_classes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The metrics as one JSON-able dict (keys documented in the module docstring)."""
        n = len(self.rows)
        truth = np.array([r.truth for r in self.rows], dtype=np.int64)
        verdict = np.array([r.verdict for r in self.rows])
        has_p = np.array([r.p_defect is not None for r in self.rows], dtype=bool)
        p = np.array([r.p_defect if r.p_defect is not None else 0.5 for r in self.rows], dtype=np.float64)
        top = np.where(has_p, (p >= 0.5).astype(np.int64), -1)
        correct = top == truth
        tp = int(((top == 1) & (truth == 1)).sum())
        fp = int(((top == 1) & (truth == 0)).sum())
        fn = int(((top != 1) & (truth == 1)).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        decided = (verdict == "ok") | (verdict == "defect")
        decided_correct = ((verdict == "ok") & (truth == 0)) | ((verdict == "defect") & (truth == 1))
        confusion = [[int(((truth == t) & (verdict == v)).sum()) for v in VERDICTS] for t in (0, 1)]
        latencies = np.array([r.latency_ms for r in self.rows]) if n else np.zeros(1)
        return {
            "model": self.model_name,
            "model_version": self.model_version,
            "data": self.data_dir,
            "n": n,
            "n_ok": int((truth == 0).sum()),
            "n_defect": int((truth == 1).sum()),
            "accuracy": float(correct.mean()) if n else 0.0,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "escapes": int(((verdict == "ok") & (truth == 1)).sum()),
            "false_rejects": int(((verdict == "defect") & (truth == 0)).sum()),
            "unclear": int((verdict == "unclear").sum()),
            "unclear_rate": float((verdict == "unclear").mean()) if n else 0.0,
            "rejected": int((verdict == "rejected").sum()),
            "refused_by_checks": sum(
                r.verdict == "unclear" and r.reason is not None and refused_by_checks(r.reason)
                for r in self.rows
            ),
            "decided": int(decided.sum()),
            "decided_accuracy": float(decided_correct.sum() / decided.sum()) if decided.any() else 0.0,
            "confusion": {"rows": list(LABELS), "columns": list(VERDICTS), "counts": confusion},
            "ece": ece(p[has_p], truth[has_p]) if has_p.any() else None,
            "thresholds": self.thresholds,
            "latency_ms_p50": float(np.percentile(latencies, 50)),
            "latency_ms_p95": float(np.percentile(latencies, 95)),
            "skipped": len(self.skipped),
            "skipped_files": self.skipped[:_LISTED],
            "missing_classes": self.missing_classes,
        }

    def chosen_band(self, margin: float) -> dict[str, Any]:
        """The card's rule (0 escapes, 0 false rejects, `margin` logits) on this folder's own photos.

        For a new camera or line: the band its labelled photos give, in sample, and the rule's
        cross-validated risk at every margin. As in `check-model`, every photo with a network output
        takes part in choosing; those the quality or scene checks refuse have none, and those that do
        not decode are rejected. In the band's unclear rate the refused and the out-of-distribution
        photos count as unclear, as they are at any band.
        """
        kept = [
            r
            for r in self.rows
            if r.verdict != "rejected"
            and r.p_defect is not None
            and not (r.reason is not None and refused_by_checks(r.reason))
        ]
        p = np.array([r.p_defect for r in kept], dtype=np.float64)
        y = np.array([r.truth for r in kept], dtype=np.int64)
        if not ((y == 0).any() and (y == 1).any()):
            raise ValueError("choosing a band needs ok and defect photos that the checks let through")
        op = choose_thresholds(p, y, 0, 0, margin)
        require_band(op, 0, 0)
        ood = np.array([r.reason is not None and r.reason.startswith(OUT_OF_DISTRIBUTION) for r in kept])
        in_band = score(p[~ood], y[~ood], op.t_ok, op.t_defect).unclear
        rejected = sum(r.verdict == "rejected" for r in self.rows)
        refused = len(self.rows) - len(kept) - rejected
        return {
            "margin": margin,
            "t_ok": op.t_ok,
            "t_defect": op.t_defect,
            "n": len(self.rows),
            "unclear_rate": (in_band + int(ood.sum()) + refused) / len(self.rows),
            "refused_by_checks": refused,
            "out_of_distribution": int(ood.sum()),
            "rejected": rejected,
            "by_margin": margin_risk(p, y),
        }

    def curves(self) -> dict[str, Any]:
        """Reliability bins and the risk-coverage sweep, over images with a model output."""
        rows = [r for r in self.rows if r.p_defect is not None]
        p = np.array([r.p_defect for r in rows], dtype=np.float64)
        t = np.array([r.truth for r in rows], dtype=np.int64)
        return {"reliability": reliability(p, t), "risk_coverage": risk_coverage(p, t)}


def evaluate_folder(classifier: OnnxClassifier, data_dir: Path) -> EvalResult:
    """Classify every image under data_dir/def_front and data_dir/ok_front, one at a time."""
    listing = scan_folder(data_dir)
    result = EvalResult(
        classifier.name,
        classifier.version,
        classifier.thresholds.model_dump(),
        str(data_dir),
        skipped=[str(p.relative_to(data_dir)) for p in listing.skipped],
        missing_classes=listing.missing,
    )
    warmed = False
    for it in listing.items:
        try:
            data = it.path.read_bytes()
        except OSError as exc:
            # An unreadable file is a failed image, counted like one that does not decode.
            result.rows.append(Row(str(it.path), it.label, "rejected", None, None, f"unreadable: {exc}", 0.0))
            continue
        if not warmed:
            # onnxruntime's first run allocates its buffers; a worker pays that once, not per image.
            classifier.predict_many([data])
            warmed = True
        result.rows.append(evaluate_one(classifier, str(it.path), it.label, data))
    return result


def evaluate_one(classifier: OnnxClassifier, path: str, truth: int, data: bytes) -> Row:
    """One image through `predict_many`, timed; a refused frame's p_defect comes from the network alone."""
    t0 = time.perf_counter()
    out = classifier.predict_many([data])[0]
    latency = (time.perf_counter() - t0) * 1000
    if isinstance(out, InvalidImage):
        return Row(path, truth, "rejected", None, None, str(out), latency)
    p_defect: float | None = out.p_defect
    if out.reason is not None and refused_by_checks(out.reason):
        # The verdict carries no model output; ask the network alone (outside the timing).
        p_defect = classifier.model_p_defect([data])[0]
    return Row(path, truth, out.label, p_defect, out.ood_score, out.reason, latency)


def format_text(result: EvalResult) -> str:
    """Human-readable summary for the terminal."""
    s = result.summary()
    c = s["confusion"]["counts"]
    lines = [
        f"model {s['model']} {s['model_version']} on {s['data']}: {s['n']} images "
        f"({s['n_ok']} ok, {s['n_defect']} defect)",
        f"accuracy (top label, no abstaining) {s['accuracy']:.4%}   precision {s['precision']:.4f}  "
        f"recall {s['recall']:.4f}  F1 {s['f1']:.4f}",
        f"thresholds t_ok {s['thresholds']['t_ok']:.4f}  t_defect {s['thresholds']['t_defect']:.4f}",
        f"escapes {s['escapes']}   false rejects {s['false_rejects']}   unclear {s['unclear']} "
        f"({s['unclear_rate']:.2%})   rejected {s['rejected']}   "
        f"decided accuracy {s['decided_accuracy']:.4%}",
        "confusion (rows truth; columns ok / defect / unclear / rejected):",
        f"  ok      {c[0][0]:6d} {c[0][1]:6d} {c[0][2]:6d} {c[0][3]:6d}",
        f"  defect  {c[1][0]:6d} {c[1][1]:6d} {c[1][2]:6d} {c[1][3]:6d}",
        f"latency per image p50 {s['latency_ms_p50']:.2f} ms  p95 {s['latency_ms_p95']:.2f} ms",
    ]
    lines += warnings(result)
    return "\n".join(lines) + "\n"


def warnings(result: EvalResult) -> list[str]:
    """What the folder lacked or held besides images: said aloud, since it changes what was measured."""
    out = [f"warning: no {name}/ folder: only one class was evaluated" for name in result.missing_classes]
    if result.skipped:
        shown = ", ".join(result.skipped[:_LISTED]) + (" ..." if len(result.skipped) > _LISTED else "")
        out.append(f"warning: {len(result.skipped)} files skipped (hidden or not an image suffix): {shown}")
    return out


def format_band(band: dict[str, Any]) -> str:
    """The chosen band, how to set it, and the rule's cross-validated risk, for the terminal."""
    lines = [
        f"band chosen on these {band['n']} photos (0 escapes, 0 false rejects, {band['margin']:g}-logit "
        f"margin): t_ok {band['t_ok']:.6f}  t_defect {band['t_defect']:.6f}  unclear "
        f"{band['unclear_rate']:.2%} (refused by the checks {band['refused_by_checks']}, out of "
        f"distribution {band['out_of_distribution']}, rejected {band['rejected']})",
        "in sample: it holds on these photos by construction. Each margin's band on all of them, and the",
        "rule out of sample (chosen on 9 of 10 folds, scored on the 10th, 20 repeats):",
        "  margin  t_ok      t_defect  | unclear   escapes/1000 defects  false rejects/1000 ok",
    ]
    lines += [
        f"  {r['margin']:6.1f}  {r['t_ok']:.6f}  {r['t_defect']:.6f}  | {r['cv_unclear_rate']:7.2%}  "
        f"{r['cv_escapes_per_1000_defects']:20.2f}  {r['cv_false_rejects_per_1000_ok']:21.2f}"
        for r in band["by_margin"]
    ]
    # Every digit: at margin 0 the band sits one float above a photo, and six decimals could round below it.
    setting = f"PARTCHECK_PREDICT_T_OK={band['t_ok']!r} PARTCHECK_PREDICT_T_DEFECT={band['t_defect']!r}"
    lines.append(f"to use it: {setting}")
    return "\n".join(lines) + "\n"
