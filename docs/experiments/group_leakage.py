"""Session 18: does the copy-group split leave copies across it? A check with other candidates.

`partcheck audit-data --groups` finds copies among each photo's 10 nearest ring signatures, which depend on
brightness. This looks for what that may have missed: each validation photo of the group split against
its nearest training photos by the ring signature standardised per photo (mean 0, spread 1, so a copy the
author made brighter or darker is still near), verified with the same detail share. It prints, and writes
as JSON, how many validation photos still have a copy in training, for the file-name split too.

    PYTHONPATH=. .venv/bin/python docs/experiments/group_leakage.py ../shared/data/casting/train \
        services/predict/train/copy_groups.json /tmp/leakage.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from services.predict.train import data
from services.predict.train.audit import SAME, _aligned_detail, _photos, _Prepared, nearest

CANDIDATES = 5


def standardised(signatures: np.ndarray) -> np.ndarray:
    """Each ring signature less its mean, over its spread: blind to the photo's brightness and contrast."""
    centred = signatures - signatures.mean(1, keepdims=True)
    scaled: np.ndarray = centred / np.maximum(centred.std(1, keepdims=True), 1e-9)
    return scaled


def leakage(items: list[data.Item], groups: dict[str, str] | None) -> dict[str, object]:
    """Validation photos of this split with a copy among their nearest standardised training signatures."""
    train, val = data.split(items, 0.2, groups)
    train_images, train_sig = _photos(train)
    val_images, val_sig = _photos(val)
    near = nearest(standardised(val_sig), CANDIDATES, standardised(train_sig))
    best = []
    for i, row in enumerate(near):
        # same_photo, with the validation photo prepared once for its candidates instead of once each.
        prepared = _Prepared(val_images[i])
        scores = [_aligned_detail(prepared, train_images[j]) for j in row]
        best.append(max(scores))
    shares = np.array(best)
    return {
        "validation": len(val),
        "train": len(train),
        "with_copy_at_0.6": int((shares >= SAME).sum()),
        "with_copy_at_0.5": int((shares >= 0.5).sum()),
        "with_copy_at_0.8": int((shares >= 0.8).sum()),
        "closest_share_median": float(np.median(shares)),
    }


def main(data_dir: Path, groups_file: Path, out: Path) -> None:
    items = data.list_items(data_dir)
    start = time.time()
    result = {
        "candidates": CANDIDATES,
        "group_split": leakage(items, data.load_groups(groups_file)),
        "file_name_split": leakage(items, None),
    }
    result["seconds"] = round(time.time() - start)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
