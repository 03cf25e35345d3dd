"""Session 17: the re-framed copies' unclear rate with and without the photos filed under both labels.

Reads the report `label_conflicts.py` wrote, re-frames every validation photo as `gated_framing.py` does
(the six variants, noise seeds 1000 + i), and scores the shipped model's network outputs (no gates) at the
card's band, on all photos and without those with an opposite-label copy at the default detail share.
Results in docs/model.md, session 17.

    .venv/bin/python docs/experiments/reframed_conflicts.py ../shared/data/casting/train /tmp/conflicts.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from services.predict.onnx_backend import OnnxClassifier
from services.predict.train import data
from services.predict.train.audit import SAME
from services.predict.train.calibrate import score
from services.predict.train.variants import VARIANTS, reframe


def main(data_dir: Path, report: Path) -> None:
    found = json.loads(report.read_text())
    conflicted = {n for c in found["conflicts"] if c["corr"] >= SAME for n in (c["a"], c["b"])}
    _, val = data.split(data.list_items(data_dir), 0.2)
    keep = np.array([it.path.name not in conflicted for it in val])
    y = np.array([it.label for it in val])
    clf = OnnxClassifier(Path("models/partcheck-defect.onnx"), threads=2)
    band = clf.thresholds
    photos = [it.path.read_bytes() for it in val]
    sets = {"validation": photos} | {
        v.name: [reframe(b, v, seed=1000 + i) for i, b in enumerate(photos)] for v in VARIANTS
    }
    print(f"{int((~keep).sum())} of {len(val)} validation photos have an opposite-label copy at >= {SAME}")
    for name, payloads in sets.items():
        p = np.array(clf.model_p_defect(payloads), np.float64)
        every = score(p, y, band.t_ok, band.t_defect)
        clean = score(p[keep], y[keep], band.t_ok, band.t_defect)
        print(
            f"{name:18s} all: unclear {every.unclear / every.n:6.2%}, escapes {every.escapes}, "
            f"false rejects {every.false_rejects} | without: unclear {clean.unclear / clean.n:6.2%}, "
            f"escapes {clean.escapes}, false rejects {clean.false_rejects}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
