"""Session 19: the shipped recipe cross-validated over five folds, by file name or by near-duplicate group.

Each run's card says which split it used (`--val-fold K`, and `--groups FILE` for the group folds).

Each fold's model (`partcheck train ... --val-fold K`) scores its own validation fold from JPEG bytes through
`preprocess` and onnxruntime (the network's logits, no quality, scene or OOD gate), so every photo gets one
out-of-fold margin (logit_defect - logit_ok). From those:

1. the top label out of fold, over all photos and per fold;
2. the card's rule (0 escapes, 0 false rejects, 0.5-logit margin) chosen on the other four folds'
   out-of-fold photos, with a temperature fitted on them too, and measured on the held-back fold: the band
   and the model both out of sample;
3. the same rule on each fold alone (in-sample for the band, as a card's is), and the rule at each margin
   of `calibrate.MARGINS` chosen on four folds and measured on the fifth;
4. the photos wrong out of fold, and whether a near-duplicate of theirs sits in the other class: a
   verified opposite-label pair at detail share 0.6 (`partcheck audit-data --json`, its "conflicts"),
   and, coarser, a group of `copy_groups.json` holding both classes (sessions 17-18).

    .venv/bin/partcheck audit-data --json > /tmp/s19/audit.json
    PYTHONPATH=. .venv/bin/python docs/experiments/cv_folds.py ../shared/data/casting/train /tmp/runs/cv \
        services/predict/train/copy_groups.json /tmp/s19/audit.json /tmp/s19/cv.json
    (the group folds: /tmp/runs/gcv instead of /tmp/runs/cv)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from services.predict.onnx_backend import CARD_SUFFIX
from services.predict.preprocess import preprocess
from services.predict.train import calibrate, data

MARGIN = 0.5


def run_card(run: Path) -> dict[str, Any]:
    """The one model card a training run wrote into its output folder."""
    cards = sorted(run.glob("*" + CARD_SUFFIX))
    if len(cards) != 1:
        raise SystemExit(f"{run}: expected one model card, found {len(cards)}")
    return dict(json.loads(cards[0].read_text()))


def fold_margins(model: Path, items: list[data.Item], size: int) -> np.ndarray:
    """logit_defect - logit_ok of each photo, from its bytes."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out: list[float] = []
    for start in range(0, len(items), 64):
        batch = np.stack([preprocess(it.path.read_bytes(), size) for it in items[start : start + 64]])
        logits = session.run(None, {session.get_inputs()[0].name: batch[:, None].astype(np.float32)})
        lg = np.asarray(logits[names.index("logits")], dtype=np.float64)
        out.extend(lg[:, 1] - lg[:, 0])
    return np.array(out)


def rule(
    z: np.ndarray, y: np.ndarray, temperature: float, margin: float = MARGIN
) -> calibrate.OperatingPoint:
    """The card's rule on margins scaled by `temperature`."""
    return calibrate.choose_thresholds(calibrate.softmax_defect(as_logits(z), temperature), y, margin=margin)


def held_back(
    z: np.ndarray, y: np.ndarray, fold: np.ndarray, k: int, temperature: float, margin: float
) -> tuple[calibrate.OperatingPoint, calibrate.OperatingPoint]:
    """The band chosen on every fold but `k` (at that data's `temperature`), and what it does on fold `k`."""
    here, rest = fold == k, fold != k
    chosen = rule(z[rest], y[rest], temperature, margin)
    measured = calibrate.score(
        calibrate.softmax_defect(as_logits(z[here]), temperature), y[here], chosen.t_ok, chosen.t_defect
    )
    return chosen, measured


def as_logits(z: np.ndarray) -> np.ndarray:
    """Margins (logit_defect - logit_ok) as two-class logits, the form `calibrate` takes."""
    return np.stack([np.zeros_like(z), z], 1)


def main(data_dir: Path, runs: str, groups_file: Path, audit_file: Path, out: Path) -> None:
    """Score every fold's validation photos with its model and print the four measurements."""
    items = data.list_items(data_dir)
    rows: list[dict[str, Any]] = []
    # As many runs as the first run's validation fraction makes folds (0.2: five).
    folds = round(1 / data.SplitSpec.from_config(run_card(Path(f"{runs}0"))["training"]["config"]).fraction)
    for k in range(folds):
        card = run_card(Path(f"{runs}{k}"))
        spec = data.SplitSpec.from_config(card["training"]["config"])
        if spec.fold != k or round(1 / spec.fraction) != folds:
            raise SystemExit(f"{runs}{k}: its card validates on {spec.describe()}, not fold {k} of {folds}")
        val = spec.apply(items)[1]
        z = fold_margins(Path(f"{runs}{k}") / card["file"], val, int(card["input"]["size"]))
        rows += [
            {"name": it.path.name, "label": it.label, "fold": k, "z": float(m)}
            for it, m in zip(val, z, strict=True)
        ]
    z = np.array([r["z"] for r in rows])
    y = np.array([r["label"] for r in rows])
    fold = np.array([r["fold"] for r in rows])

    # Opposite-label near-duplicates: a photo whose group holds the other class.
    key = data.load_groups(groups_file)
    labels_of: dict[str, set[int]] = {}
    for r in rows:
        labels_of.setdefault(key.get(r["name"], r["name"]), set()).add(r["label"])
    mixed = np.array([len(labels_of[key.get(r["name"], r["name"])]) > 1 for r in rows])
    conflicts = json.loads(audit_file.read_text())["conflicts"]
    paired_names = {Path(c[side]).name for c in conflicts for side in ("a", "b")}
    paired = np.array([r["name"] in paired_names for r in rows])

    wrong = (z > 0).astype(int) != y
    report: dict[str, Any] = {
        "n": len(rows),
        "top_label": float(1 - wrong.mean()),
        "wrong": int(wrong.sum()),
        "wrong_defect_as_ok": int((wrong & (y == 1)).sum()),
        "wrong_ok_as_defect": int((wrong & (y == 0)).sum()),
        "wrong_with_opposite_pair": int((wrong & paired).sum()),
        "photos_with_opposite_pair": int(paired.sum()),
        "top_label_without_opposite_pairs": float(1 - wrong[~paired].mean()),
        "wrong_in_mixed_groups": int((wrong & mixed).sum()),
        "photos_in_mixed_groups": int(mixed.sum()),
        "folds": [],
    }
    # Each fold's band is chosen at the temperature fitted on the other four folds: one fit per fold,
    # whatever the margin.
    others_t = [calibrate.fit_temperature(as_logits(z[fold != k]), y[fold != k]) for k in range(folds)]
    for k in range(folds):
        here = fold == k
        t = others_t[k]
        chosen, measured = held_back(z, y, fold, k, t, MARGIN)
        own = rule(z[here], y[here], calibrate.fit_temperature(as_logits(z[here]), y[here]))
        report["folds"].append(
            {
                "fold": k,
                "n": int(here.sum()),
                "defects": int((y[here] == 1).sum()),
                "top_label": float(1 - wrong[here].mean()),
                "wrong": int(wrong[here].sum()),
                "band_from_other_folds": {"t_ok": chosen.t_ok, "t_defect": chosen.t_defect, "temperature": t},
                "out_of_sample": {
                    "escapes": measured.escapes,
                    "false_rejects": measured.false_rejects,
                    "unclear_rate": measured.unclear / measured.n,
                },
                "other_folds_in_sample_unclear": chosen.unclear / chosen.n,
                "own_band_in_sample": {
                    "t_ok": own.t_ok,
                    "t_defect": own.t_defect,
                    "unclear_rate": own.unclear / own.n,
                },
            }
        )
    # The rule at each margin, chosen on four folds and measured on the fifth: how much margin the band
    # needs to hold out of sample.
    report["margins_out_of_sample"] = []
    for margin in calibrate.MARGINS:
        per_fold = [held_back(z, y, fold, k, others_t[k], margin)[1] for k in range(folds)]
        totals = {
            "margin": margin,
            "escapes": sum(o.escapes for o in per_fold),
            "false_rejects": sum(o.false_rejects for o in per_fold),
            "unclear_rate": sum(o.unclear for o in per_fold) / len(z),
            "per_fold_escapes": [o.escapes for o in per_fold],
            "per_fold_unclear": [round(o.unclear / o.n, 4) for o in per_fold],
        }
        report["margins_out_of_sample"].append(totals)
    t_all = calibrate.fit_temperature(as_logits(z), y)
    pooled = rule(z, y, t_all)
    report["pooled_in_sample"] = {
        "temperature": t_all,
        "t_ok": pooled.t_ok,
        "t_defect": pooled.t_defect,
        "unclear_rate": pooled.unclear / pooled.n,
    }
    # The same without the photos that have an opposite-label near-duplicate: what the band would cost on
    # photos whose labels no near-duplicate contradicts.
    clean = ~paired
    t_clean = calibrate.fit_temperature(as_logits(z[clean]), y[clean])
    pooled_clean = rule(z[clean], y[clean], t_clean)
    report["pooled_in_sample_without_opposite_pairs"] = {
        "n": int(clean.sum()),
        "temperature": t_clean,
        "t_ok": pooled_clean.t_ok,
        "t_defect": pooled_clean.t_defect,
        "unclear_rate": pooled_clean.unclear / pooled_clean.n,
    }
    p_ok = 1 - calibrate.softmax_defect(as_logits(z), t_all)
    order = np.argsort(-np.where(y == 1, p_ok, -1))
    report["most_ok_looking_defects"] = [
        {**rows[i], "p_ok": float(p_ok[i]), "opposite_pair": bool(paired[i]), "mixed_group": bool(mixed[i])}
        for i in order[:15]
    ]
    report["wrong_photos"] = [
        {**rows[i], "opposite_pair": bool(paired[i]), "mixed_group": bool(mixed[i])}
        for i in np.flatnonzero(wrong)
    ]
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k not in ("wrong_photos",)}, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
