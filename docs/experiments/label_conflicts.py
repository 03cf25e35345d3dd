"""Session 17: the same photo in both class folders, and what it does to the band.

Runs `services.predict.train.audit` on the training folder (copies filed under both labels, validation
photos with a copy in training), then the card's band rule (0 escapes, 0 false rejects, 0.5-logit margin) on
the shipped model's network outputs (no gates) over validation: all of it, without the photos that are an
opposite-label copy at several correlation thresholds, and only the photos with no verified copy in
training. Leaving photos out because of their labels is a diagnosis of what sets the band, not a
measurement of the model. Results in docs/model.md, session 17.

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
from services.predict.train.calibrate import choose_thresholds


def band(p_defect: np.ndarray, y: np.ndarray) -> dict[str, float | int]:
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
    rows = {"all": band(p, y)}
    for at in (0.5, 0.6, 0.7, 0.8):
        conflicted = {n for c in found.conflicts if c.corr >= at for n in (c.a, c.b)}
        keep = np.array([n not in conflicted for n in names])
        rows[f"without opposite-label copies >= {at}"] = band(p[keep], y[keep])
    copied = {c.a for c in found.across_split}
    unseen = np.array([n not in copied for n in names])
    rows["no verified copy in training"] = band(p[unseen], y[unseen])
    copies_at = {at: sum(c.corr >= at for c in found.across_split) for at in (0.5, 0.6, 0.7, 0.8)}
    report = found.summary() | {"bands": rows, "validation_copies_by_threshold": copies_at}
    out.write_text(json.dumps(report, indent=1))
    print(f"{found.pairs_verified} pairs verified, {len(found.conflicts)} opposite-label ({found.same})")
    print(f"validation photos with a verified copy in training, by threshold: {copies_at}")
    for key, b in rows.items():
        print(
            f"{key}: n {b['n']} ({b['defects']} defects), top label wrong {b['top_label_wrong']}, "
            f"band {b['t_ok']:.4f}/{b['t_defect']:.4f}, unclear {b['unclear']} ({b['unclear_rate']:.2%})"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
