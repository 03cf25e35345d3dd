"""Model benchmark: bytes -> verdict latency on one thread, batch throughput, size, accuracy, training time.

Accuracy is measured on this repository's validation split of ../shared/data/casting/train (the proxy for
the held-out set, which is not here) and on re-framed copies of it; the issue's targets are the rows' targets.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.predict.onnx_backend import OnnxClassifier, card_path_for
from services.predict.settings import DEFAULT_MODEL
from services.predict.train.data import list_items, split
from services.predict.train.evaluate import EvalResult, evaluate_one
from services.predict.train.variants import VARIANTS, reframe

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "casting" / "train"


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
    """Measure; `quick` uses fewer images."""
    clf = OnnxClassifier(DEFAULT_MODEL, threads=1)
    card = json.loads(card_path_for(DEFAULT_MODEL).read_text())
    items = split(list_items(DATA), float(card["training"]["config"]["val_fraction"]))[1]
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
    t0 = time.perf_counter()
    for i in range(0, len(batch), 32):
        clf.predict_many(batch[i : i + 32])
    throughput = len(batch) / (time.perf_counter() - t0)

    val = _verdicts(clf, payloads)
    reframed = {}
    for v in VARIANTS if not quick else VARIANTS[2:3]:
        copies = [(label, reframe(data, v, seed=i)) for i, (label, data) in enumerate(payloads)]
        reframed[v.name] = _verdicts(clf, copies)
    worst = min(reframed.values(), key=lambda r: r["accuracy"])
    size_mb = DEFAULT_MODEL.stat().st_size / 1e6
    train_min = float(card["training"]["seconds"]) / 60
    rows = [
        _row("JPEG bytes -> verdict p50 (1 thread)", p50, "ms", "<= 2", p50 <= 2.0),
        _row("JPEG bytes -> verdict p95 (1 thread)", p95, "ms", "", None),
        _row("batch throughput (32/batch, 1 thread)", throughput, "images/s", "", None),
        _row("model file", size_mb, "MB", "<= 2", size_mb <= 2.0),
        _row(
            "validation accuracy, no abstaining",
            val["accuracy"] * 100,
            "%",
            ">= 99.85",
            val["accuracy"] >= 0.9985,
        ),
        # The band was chosen on these photos for 0 escapes and 0 false rejects: those two rows hold by
        # construction (in-sample), so they carry no pass/fail; the unclear rate is what the band costs.
        _row("validation escapes (in-sample: band chosen here)", val["escapes"], "", "0", None),
        _row("validation false rejects (in-sample)", val["false_rejects"], "", "0", None),
        _row(
            "validation unclear (in-sample band)",
            val["unclear_rate"] * 100,
            "%",
            "<= 1",
            val["unclear_rate"] <= 0.01,
        ),
        _row(
            f"re-framed accuracy (worst: {min(reframed, key=lambda k: reframed[k]['accuracy'])})",
            worst["accuracy"] * 100,
            "%",
            ">= 98",
            worst["accuracy"] >= 0.98,
        ),
        _row(
            "re-framed escapes (all variants)",
            sum(r["escapes"] for r in reframed.values()),
            "",
            "0",
            all(r["escapes"] == 0 for r in reframed.values()),
        ),
        _row(
            "re-framed unclear (worst)",
            max(r["unclear_rate"] for r in reframed.values()) * 100,
            "%",
            "<= 5",
            all(r["unclear_rate"] <= 0.05 for r in reframed.values()),
        ),
        _row("full training (from the card)", train_min, "min", "<= 15", train_min <= 15),
    ]
    return {
        "title": f"{card['name']} {card['version']} on {len(payloads)} validation images",
        "rows": rows,
        "validation": val,
        "reframed": reframed,
        "latency_ms": {"p50": p50, "p95": p95},
    }
