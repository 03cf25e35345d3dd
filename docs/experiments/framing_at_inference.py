"""Session 14: the shipped model with the part located and cut at inference only (docs/model.md).

Network outputs without the quality, scene and OOD gates, for validation and its six re-framed copies,
once through the centre square (as shipped) and once through `framing.cut`; the band is chosen on
validation with the card's rule (0 escapes, 0 false rejects, 0.5-logit margin) and applied to every set.

    .venv/bin/python docs/experiments/framing_at_inference.py ../shared/data/casting/train
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from services.predict.framing import cut, locate
from services.predict.onnx_backend import OnnxClassifier
from services.predict.preprocess import decode, to_array
from services.predict.train import data
from services.predict.train.calibrate import choose_thresholds, score
from services.predict.train.trainer import _fit_framing
from services.predict.train.variants import VARIANTS, reframe


def main(data_dir: Path) -> None:
    clf = OnnxClassifier(Path("models/partcheck-defect.onnx"))
    train, val = data.split(data.list_items(data_dir), 0.2)
    framing = _fit_framing(train, 300)
    y = np.array([it.label for it in val])
    photos = [it.path.read_bytes() for it in val]
    sets = {"validation": photos} | {
        v.name: [reframe(b, v, seed=i) for i, b in enumerate(photos)] for v in VARIANTS
    }

    def p_defect(arrays: list[np.ndarray]) -> np.ndarray:
        logits = np.concatenate(
            [clf._run(np.stack(arrays[i : i + 64])[:, None])[0] for i in range(0, len(arrays), 64)]
        )
        return np.asarray(1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0]) / clf.card.temperature)), np.float64)

    out: dict[str, dict[str, np.ndarray]] = {"centre": {}, "located": {}}
    for name, payloads in sets.items():
        images = [decode(b, 300).image for b in payloads]
        out["centre"][name] = p_defect([to_array(img, 300) for img in images])
        out["located"][name] = p_defect([cut(img, locate(img, framing), 300) for img in images])
    for mode, per_set in out.items():
        op = choose_thresholds(per_set["validation"], y, 0, 0, 0.5)
        print(f"{mode}: t_ok {op.t_ok:.4f} t_defect {op.t_defect:.4f}")
        for name, p in per_set.items():
            s = score(p, y, op.t_ok, op.t_defect)
            top = float(np.mean((p > 0.5) == y))
            print(
                f"  {name:18s} top label {top:.2%} escapes {s.escapes} false rejects "
                f"{s.false_rejects} unclear {s.unclear / s.n:.2%}"
            )
        every = choose_thresholds(np.concatenate(list(per_set.values())), np.tile(y, len(per_set)), 0, 0, 0.5)
        rates = [score(p, y, every.t_ok, every.t_defect) for p in per_set.values()]
        print("  all seven:", " ".join(f"{r.unclear / r.n:.2%}" for r in rates))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
