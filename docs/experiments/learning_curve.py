"""Session 20: the shipped recipe trained on 40, 60 and 80 % of the photos, scored on the same folds.

Each run's card says which hash range it validated on; everything outside that range was training. The
photos are then cut into the file-name folds of 0.2 (session 19's folds), and each model is scored, from
JPEG bytes through `preprocess` and onnxruntime (the network's logits, no gates), on every fold of 0.2
that lies wholly inside its validation range. Per fold and training share:

1. the top label (defects called ok, ok parts called defect), and how many of the wrong photos have a
   verified near-duplicate under the other label (`partcheck audit-data --json`, its "conflicts");
2. the card's rule (0 escapes, 0 false rejects, margin 0.5) chosen on that fold in-sample, at a
   temperature fitted there: unclear rate and temperature, and the most ok-looking defect's p_ok.

    PYTHONPATH=. .venv/bin/python docs/experiments/learning_curve.py ../shared/data/casting/train \
        /tmp/s19/audit.json /tmp/s20/lc.json /tmp/runs/lc{40,60,60s1} /tmp/runs/cv{0,1,2}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, so this folder is on the path and its neighbour's helpers import by module name.
from cv_folds import as_logits, fold_margins, rule, run_card

from services.predict.train import calibrate, data

FOLD = 0.2


def main(data_dir: Path, audit_file: Path, out: Path, runs: list[Path]) -> None:
    """Score each run on the folds of 0.2 it did not train on; print and write the table."""
    items = data.list_items(data_dir)
    folds = round(1 / FOLD)
    fold_of = {
        it.path: next(k for k in range(folds) if data.is_validation(it.path, FOLD, fold=k)) for it in items
    }
    conflicts = json.loads(audit_file.read_text())["conflicts"]
    paired = {Path(c[side]).name for c in conflicts for side in ("a", "b")}
    rows: list[dict[str, Any]] = []
    for run in runs:
        card = run_card(run)
        spec = data.SplitSpec.from_config(card["training"]["config"])
        if spec.groups is not None:
            raise SystemExit(f"{run}: split by groups; the folds here are by file name")
        train, val = spec.apply(items)
        share = len(train) / len(items)
        low, high = spec.fold * spec.fraction, (spec.fold + 1) * spec.fraction
        # Folds of 0.2 wholly inside the run's validation range (a small tolerance for 0.6 = 3 x 0.2).
        inside = [k for k in range(folds) if low - 1e-9 <= k * FOLD and (k + 1) * FOLD <= high + 1e-9]
        z_all = fold_margins(run / card["file"], val, int(card["input"]["size"]))
        for k in inside:
            pick = np.array([fold_of[it.path] == k for it in val])
            z = z_all[pick]
            y = np.array([it.label for it, p in zip(val, pick, strict=True) if p])
            names = [it.path.name for it, p in zip(val, pick, strict=True) if p]
            wrong = (z > 0).astype(int) != y
            with_pair = np.array([n in paired for n in names])
            t = calibrate.fit_temperature(as_logits(z), y)
            band = rule(z, y, t)
            p_ok = 1 - calibrate.softmax_defect(as_logits(z), t)
            hardest = int(np.argmax(np.where(y == 1, p_ok, -1)))
            rows.append(
                {
                    "run": run.name,
                    "train_photos": len(train),
                    "train_share": round(share, 3),
                    "fold": k,
                    "n": len(y),
                    "top_label": float(1 - wrong.mean()),
                    "defect_as_ok": int((wrong & (y == 1)).sum()),
                    "ok_as_defect": int((wrong & (y == 0)).sum()),
                    "wrong_with_opposite_pair": int((wrong & with_pair).sum()),
                    "wrong_photos": [n for n, w in zip(names, wrong, strict=True) if w],
                    "temperature": t,
                    "band_in_sample": {"t_ok": band.t_ok, "t_defect": band.t_defect, "unclear": band.unclear},
                    "unclear_rate_in_sample": band.unclear / band.n,
                    "most_ok_looking_defect": {"name": names[hardest], "p_ok": float(p_ok[hardest])},
                }
            )
    out.write_text(json.dumps(rows, indent=1))
    print("| run | train photos | fold | n | top label | defect->ok | ok->defect | paired | T | unclear |")
    for r in rows:
        print(
            f"| {r['run']} | {r['train_photos']} | {r['fold']} | {r['n']} | {r['top_label']:.2%} "
            f"| {r['defect_as_ok']} | {r['ok_as_defect']} | {r['wrong_with_opposite_pair']} "
            f"| {r['temperature']:.3f} | {r['unclear_rate_in_sample']:.1%} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), [Path(a) for a in sys.argv[4:]])
