"""Session 17: the same photo in both class folders, and what it does to the band.

Runs `services.predict.train.audit` on the training folder (copies filed under both labels, validation
photos with a copy in training), then the card's band rule (0 escapes, 0 false rejects, 0.5-logit margin) on
the shipped model's network outputs (no gates) over validation: all of it, and without the photos that are
an opposite-label copy at several detail shares; then the card's own band on the photos whose closest
training copy scores below a share. Leaving photos out because of their labels is a diagnosis of what
sets the band, not a measurement of the model. Results in docs/model.md, session 17.

    .venv/bin/python docs/experiments/label_conflicts.py ../shared/data/casting/train /tmp/conflicts.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from services.predict.onnx_backend import OnnxClassifier
from services.predict.train import data
from services.predict.train.audit import audit
from services.predict.train.calibrate import choose_thresholds, score


def band(p_defect: np.ndarray, y: np.ndarray) -> dict[str, object]:
    """The card's rule on these photos, and their top-label errors."""
    op = choose_thresholds(p_defect, y, margin=0.5)
    return {
        "n": len(y),
        "defects": int(y.sum()),
        "top_label_wrong": int(((p_defect >= 0.5) != (y == 1)).sum()),
        "t_ok": op.t_ok,
        "t_defect": op.t_defect,
        "unclear": op.unclear,
        "unclear_rate": op.unclear / op.n,
    }


def main(data_dir: Path, out: Path) -> None:
    items = data.list_items(data_dir)
    # Recorded from 0.4 on, so the table can show each threshold from there.
    found = audit(items, lambda it: it.path.name, 0.2, same=0.4)
    _, val = data.split(items, 0.2)
    clf = OnnxClassifier(Path("models/partcheck-defect.onnx"), threads=2)
    p = np.array(clf.model_p_defect([it.path.read_bytes() for it in val]), np.float64)
    y = np.array([it.label for it in val])
    names = [it.path.name for it in val]
    rows: dict[str, dict[str, object]] = {"all": band(p, y)}
    for at in (0.5, 0.6, 0.7, 0.8):
        conflicted = {n for c in found.conflicts if c.corr >= at for n in (c.a, c.b)}
        keep = np.array([n not in conflicted for n in names])
        rows[f"without opposite-label copies >= {at}"] = band(p[keep], y[keep])
    # Photos whose closest training copy scores below a share, at the card's band (too few to choose one).
    closest = {c.a: c.corr for c in found.across_split}
    card = clf.thresholds
    for at in (0.4, 0.6, 0.7):
        unseen = np.array([closest.get(n, 0.0) < at for n in names])
        op = score(p[unseen], y[unseen], card.t_ok, card.t_defect)
        wrong = unseen & ((p >= 0.5) != (y == 1))
        rows[f"closest training copy below {at}, at the card's band"] = {
            "n": int(unseen.sum()),
            "defects": int(y[unseen].sum()),
            "top_label_wrong": int(wrong.sum()),
            "wrong": [n for n, w in zip(names, wrong, strict=True) if w],
            "t_ok": card.t_ok,
            "t_defect": card.t_defect,
            "escapes": op.escapes,
            "false_rejects": op.false_rejects,
            "unclear": op.unclear,
            "unclear_rate": op.unclear / max(op.n, 1),
        }
    copies_at = {at: sum(c.corr >= at for c in found.across_split) for at in (0.5, 0.6, 0.7, 0.8)}
    report = found.summary() | {"bands": rows, "validation_copies_by_threshold": copies_at}
    out.write_text(json.dumps(report, indent=1))
    print(f"{found.pairs_verified} pairs verified, {len(found.conflicts)} opposite-label ({found.same})")
    print(f"validation photos with a verified copy in training, by threshold: {copies_at}")
    for key, b in rows.items():
        print(f"{key}: " + ", ".join(f"{k} {v}" for k, v in b.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
