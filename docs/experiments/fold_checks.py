"""Session 20: the post-export checks of session 19's five fold models, side by side.

Each fold model was checked by `partcheck check-model --model RUN/partcheck-defect.onnx` (its card's own fold
as validation, its own band), which writes the checks into the run's card. This prints, per fold, the
validation figures from bytes, each re-framed set's accuracy, escapes, false rejects and unclear rate, the
synthetic non-part frames given a verdict, and the one band over all seven sets.

    PYTHONPATH=. .venv/bin/python docs/experiments/fold_checks.py /tmp/s20/checks.json /tmp/runs/cv{0..4}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Run as a script, so this folder is on the path and its neighbour's helpers import by module name.
from cv_folds import run_card


def summary(card: dict[str, Any]) -> dict[str, Any]:
    """The checks' figures of one card that the table shows."""
    m = card["metrics"]
    if "reframed" not in m:
        raise SystemExit(f"{card['version']}: no post-export checks in its card; run check-model first")
    keep = ("n", "accuracy", "escapes", "false_rejects", "unclear_rate", "refused_by_checks")
    return {
        "fold": card["training"]["config"].get("val_fold", 0),
        "validation": {k: m["validation_onnx"][k] for k in keep},
        "reframed": {name: {k: s[k] for k in keep} for name, s in m["reframed"].items()},
        "synthetic_verdicts": sum(s["verdict"] for s in m["synthetic_ood"].values()),
        "synthetic_frames": sum(s["n"] for s in m["synthetic_ood"].values()),
        "band_all_sets": m["band_all_sets"]["unclear_rate"],
    }


def main(out: Path, runs: list[Path]) -> None:
    """Print one row per fold and re-framed set; write every figure as JSON."""
    rows = [summary(run_card(run)) for run in runs]
    out.write_text(json.dumps(rows, indent=1))
    print("| fold | set | accuracy | escapes | false rejects | unclear | refused by the checks |")
    for r in rows:
        for name, s in {"validation": r["validation"], **r["reframed"]}.items():
            print(
                f"| {r['fold']} | {name} | {s['accuracy']:.2%} | {s['escapes']} | {s['false_rejects']} "
                f"| {s['unclear_rate']:.1%} | {s['refused_by_checks']} |"
            )
        print(
            f"| {r['fold']} | synthetic non-part frames given a verdict | {r['synthetic_verdicts']} of "
            f"{r['synthetic_frames']} | | | | |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]])
