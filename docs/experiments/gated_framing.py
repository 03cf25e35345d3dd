"""Session 15: the shipped model with the part cut only when it sits far from the training framing.

For validation and its six re-framed copies (noise seeds the card's limits were not fitted on), the part is
located once; a photo whose located side is outside [lo, hi] of the frame, or whose centre is more than
`off` of the side away from the frame's, goes through `framing.cut`, the others through the centre square
as shipped. Network outputs without the gates, scored at the card's band (fixed, not re-chosen);
results in docs/model.md, session 15.

    .venv/bin/python docs/experiments/gated_framing.py ../shared/data/casting/train
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from services.predict.framing import cut, locate
from services.predict.onnx_backend import OnnxClassifier
from services.predict.preprocess import decode, to_array
from services.predict.train import data
from services.predict.train.calibrate import score
from services.predict.train.trainer import _fit_framing
from services.predict.train.variants import VARIANTS, reframe

GATES = [(0.0, 9.0, 9.0), (0.0, 0.0, 0.0), (0.8, 1.2, 0.06), (0.85, 1.15, 0.06), (0.88, 1.12, 0.05)]


def main(data_dir: Path) -> None:
    clf = OnnxClassifier(Path("models/partcheck-defect.onnx"))
    train, val = data.split(data.list_items(data_dir), 0.2)
    framing = _fit_framing(train, 300)
    y = np.array([it.label for it in val])
    photos = [it.path.read_bytes() for it in val]
    sets = {"validation": photos} | {
        v.name: [reframe(b, v, seed=1000 + i) for i, b in enumerate(photos)] for v in VARIANTS
    }

    def p_defect(arrays: list[np.ndarray]) -> np.ndarray:
        logits = np.concatenate(
            [clf._run(np.stack(arrays[i : i + 64])[:, None])[0] for i in range(0, len(arrays), 64)]
        )
        return np.asarray(1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0]) / clf.card.temperature)), np.float64)

    measured = {}
    for name, payloads in sets.items():
        images = [decode(b, 300).image for b in payloads]
        places = [locate(img, framing) for img in images]
        short = np.array([min(img.size) for img in images], dtype=np.float64)
        side = np.array([p.side for p in places]) / short
        offsets = [
            max(abs(p.cx - img.width / 2), abs(p.cy - img.height / 2))
            for p, img in zip(places, images, strict=True)
        ]
        off = np.array(offsets) / short
        centre = p_defect([to_array(img, 300) for img in images])
        located = p_defect([cut(img, p, 300) for img, p in zip(images, places, strict=True)])
        measured[name] = (side, off, centre, located)
    band = clf.card.thresholds
    for lo, hi, most_off in GATES:
        print(f"cut when side < {lo} or > {hi} of the frame, or centre off by > {most_off}")
        for name, (side, off, centre, located) in measured.items():
            gated = (side < lo) | (side > hi) | (off > most_off)
            p = np.where(gated, located, centre)
            s = score(p, y, band.t_ok, band.t_defect)
            print(
                f"  {name:18s} cut {gated.mean():6.1%}  escapes {s.escapes}  false rejects {s.false_rejects}"
                f"  unclear {s.unclear / s.n:6.2%}  top label {np.mean((p > 0.5) == y):.2%}"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
