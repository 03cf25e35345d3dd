"""Model benchmark: bytes -> verdict latency on one thread, batch throughput, size, accuracy, training time.

Accuracy is measured on this repository's validation split of ../shared/data/casting/train (the proxy for
the held-out set, which is not here) and on re-framed copies of it; the issue's targets are the rows' targets.
Training and `check-model` fitted the OOD, scene and blur limits on re-framed copies of these same photos made
with seeds 0..n-1; the bench re-frames them with seeds from FRESH_SEED on, so the noise around each part is
new, but the photos are not, and variants with no noise (the zoom-in crop; a square photo at fill 1.0) give
the very bytes the limits were fitted on: each row says which kind its figure comes from. `--quick` scores
every fifth photo and one variant, too few for a pass/fail on accuracy: those rows are left unmarked there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.predict.onnx_backend import OnnxClassifier, card_path_for, sha256_file
from services.predict.settings import DEFAULT_MODEL
from services.predict.train.data import SplitSpec, list_items
from services.predict.train.evaluate import EvalResult, evaluate_one
from services.predict.train.variants import VARIANTS, reframe

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "casting" / "train"
FRESH_SEED = 10_000  # training and check-model re-frame photo i with seed i; these seeds were never fitted on
QUICK_VARIANTS = VARIANTS[2:3]
BATCH = 32


def _row(metric: str, value: float, unit: str, target: str, ok: bool | None) -> dict[str, Any]:
    return {"metric": metric, "value": value, "unit": unit, "target": target, "ok": ok}


def _verdicts(clf: OnnxClassifier, payloads: list[tuple[int, bytes]]) -> dict[str, float]:
    """evaluate's metrics, so the bench and `partcheck evaluate` count the same way."""
    result = EvalResult(clf.name, clf.version, clf.thresholds.model_dump(), "bench")
    result.rows = [evaluate_one(clf, str(i), label, data) for i, (label, data) in enumerate(payloads)]
    s = result.summary()
    keep = ("n", "accuracy", "escapes", "false_rejects", "unclear_rate", "refused_by_checks")
    return {k: s[k] for k in keep}


def run(quick: bool) -> dict[str, Any]:
    """Measure; `quick` scores fewer images and one re-framing variant and leaves their accuracy unmarked."""
    clf = OnnxClassifier(DEFAULT_MODEL, threads=1)
    card = json.loads(card_path_for(DEFAULT_MODEL).read_text())
    items = SplitSpec.from_config(card["training"]["config"]).apply(list_items(DATA))[1]
    if quick:
        items = items[::5]
    payloads = [(it.label, it.path.read_bytes()) for it in items]

    for _, data in payloads[:20]:  # warm-up: first calls allocate
        clf.predict_many([data])
    latencies = []
    for _, data in payloads:
        t0 = time.perf_counter()
        clf.predict_many([data])
        latencies.append((time.perf_counter() - t0) * 1000)
    p50, p95 = float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95))

    batch = [d for _, d in payloads[:256]]
    clf.predict_many(batch[:BATCH])  # warm-up at this batch size: ORT allocates for a new input shape
    t0 = time.perf_counter()
    for i in range(0, len(batch), BATCH):
        clf.predict_many(batch[i : i + BATCH])
    throughput = len(batch) / (time.perf_counter() - t0)

    val = _verdicts(clf, payloads)
    variants = QUICK_VARIANTS if quick else VARIANTS
    reframed = {}
    seed_free = []  # variants whose copies do not depend on the seed: the bytes the limits were fitted on
    for v in variants:
        copies = [(label, reframe(data, v, seed=FRESH_SEED + i)) for i, (label, data) in enumerate(payloads)]
        if copies[0][1] == reframe(payloads[0][1], v, seed=0):
            seed_free.append(v.name)
        reframed[v.name] = _verdicts(clf, copies)
    worst_name = min(reframed, key=lambda k: reframed[k]["accuracy"])
    worst = reframed[worst_name]
    unclear_name = max(reframed, key=lambda k: reframed[k]["unclear_rate"])
    size_mb = DEFAULT_MODEL.stat().st_size / 1e6
    train_min = float(card["training"]["seconds"]) / 60
    # The card's figure is the run that made this very file only if the card names the file's sha256.
    card_matches = str(card.get("sha256", "")).lower() == sha256_file(DEFAULT_MODEL)
    epochs = card["training"]["config"].get("epochs", "?")

    n = len(payloads)
    # Pass/fail only where the sample can carry it: in quick mode one error in n moves accuracy by 100/n %.
    marked = not quick
    val_note = f" (quick: {n} images)" if quick else ""
    if quick:
        var_note = f" (quick: {len(variants)} of {len(VARIANTS)} variants, {n} images)"
    else:
        var_note = f" ({len(variants)} variants)"
    fitted = "limits fitted on these photos"

    def kind(name: str) -> str:
        return "no noise: the bytes fitted on" if name in seed_free else "new noise"

    def mark(ok: bool) -> bool | None:
        return ok if marked else None

    rows = [
        _row("JPEG bytes -> verdict p50 (1 thread)", p50, "ms", "<= 2", p50 <= 2.0),
        _row("JPEG bytes -> verdict p95 (1 thread)", p95, "ms", "", None),
        _row(f"batch throughput ({BATCH}/batch, 1 thread, warmed up)", throughput, "images/s", "", None),
        _row("model file", size_mb, "MB", "<= 2", size_mb <= 2.0),
        _row(
            f"validation accuracy, no abstaining{val_note}",
            val["accuracy"] * 100,
            "%",
            ">= 99.85",
            mark(val["accuracy"] >= 0.9985),
        ),
        # The band was chosen on these photos for 0 escapes and 0 false rejects: those two rows hold by
        # construction (in-sample), so they carry no pass/fail; the unclear rate is what the band costs.
        _row(f"validation escapes (in-sample: band chosen here){val_note}", val["escapes"], "", "0", None),
        _row(f"validation false rejects (in-sample){val_note}", val["false_rejects"], "", "0", None),
        _row(
            f"validation unclear (in-sample band){val_note}",
            val["unclear_rate"] * 100,
            "%",
            "<= 1",
            mark(val["unclear_rate"] <= 0.01),
        ),
        _row(
            f"re-framed accuracy, worst: {worst_name} ({kind(worst_name)}; {fitted}){var_note}",
            worst["accuracy"] * 100,
            "%",
            ">= 98",
            mark(worst["accuracy"] >= 0.98),
        ),
        _row(
            f"re-framed escapes, all variants ({len(variants) - len(seed_free)} with new noise; {fitted})"
            f"{var_note}",
            sum(r["escapes"] for r in reframed.values()),
            "",
            "0",
            mark(all(r["escapes"] == 0 for r in reframed.values())),
        ),
        _row(
            f"re-framed unclear, worst: {unclear_name} ({kind(unclear_name)}; {fitted}){var_note}",
            reframed[unclear_name]["unclear_rate"] * 100,
            "%",
            "<= 5",
            mark(all(r["unclear_rate"] <= 0.05 for r in reframed.values())),
        ),
        _row(
            f"training to epoch {epochs}, as recorded in the card "
            + ("(sha256 = this file's; not re-measured)" if card_matches else "(NOT this file's: unmarked)"),
            train_min,
            "min",
            "<= 15",
            train_min <= 15 if card_matches else None,
        ),
    ]
    return {
        "title": f"{card['name']} {card['version']} on {n} validation images",
        "rows": rows,
        "validation": val,
        "reframed": reframed,
        "reframe_seeds": f"{FRESH_SEED}..{FRESH_SEED + n - 1} (fitting used 0..n-1)",
        "reframe_seed_free_variants": seed_free,
        "card_sha256_matches_model": card_matches,
        "latency_ms": {"p50": p50, "p95": p95},
    }
