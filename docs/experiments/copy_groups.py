"""Session 17: a validation split with no copy of its photos in training, for one measurement run.

Every candidate pair of `services.predict.train.audit` (each photo's 10 nearest ring signatures) is
verified, in two processes; pairs at or above the audit's threshold are joined into copy groups, whatever
their labels. Each group goes to validation when sha256 of its first file name falls below 0.2. The
trainer splits by file name, so the grouped split is written as a folder of symbolic links whose names
put each photo on its group's side (`<stem>_<k>.<suffix>`, the first k that does). The trainer then runs
on that folder unchanged. The committed pinhole marks name the original files, so the checks skip them.

    .venv/bin/python docs/experiments/copy_groups.py ../shared/data/casting/train /tmp/grouped
"""

from __future__ import annotations

import hashlib
import json
import sys
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

from services.predict.train import audit, data

_IMAGES: list[object] = []


def _init(paths: list[Path]) -> None:
    _IMAGES.extend(audit._load(data.Item(p, 0)) for p in paths)


def _score(pair: tuple[int, int]) -> tuple[int, int, float]:
    i, j = pair
    return i, j, audit.same_photo(_IMAGES[i], _IMAGES[j])  # type: ignore[arg-type]


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def main(data_dir: Path, out: Path) -> None:
    items = data.list_items(data_dir)
    paths = [it.path for it in items]
    _init(paths)
    near = audit.nearest(np.stack([audit.signature(img) for img in _IMAGES]), audit.NEIGHBOURS)  # type: ignore[arg-type]
    pairs = sorted({(min(i, int(j)), max(i, int(j))) for i in range(len(items)) for j in near[i]})
    print(f"{len(pairs)} candidate pairs", flush=True)
    with Pool(2, initializer=_init, initargs=(paths,)) as pool:
        scores = pool.map(_score, pairs, chunksize=64)
    parent = list(range(len(items)))
    for i, j, s in scores:
        if s >= audit.SAME:
            parent[_find(parent, i)] = _find(parent, j)
    groups: dict[int, list[int]] = {}
    for i in range(len(items)):
        groups.setdefault(_find(parent, i), []).append(i)
    out.mkdir(parents=True)
    for name in data.CLASS_DIRS:
        (out / name).mkdir()
    report: list[dict[str, Any]] = []
    for members in groups.values():
        first = min(paths[i].name for i in members)
        to_val = int.from_bytes(hashlib.sha256(first.encode()).digest()[:8], "big") / 2**64 < 0.2
        for i in members:
            p = paths[i]
            k = next(
                k for k in range(10_000) if data.is_validation(Path(f"{p.stem}_{k}{p.suffix}"), 0.2) == to_val
            )
            (out / p.parent.name / f"{p.stem}_{k}{p.suffix}").symlink_to(p.resolve())
        labels = sorted({items[i].label for i in members})
        report.append(
            {"validation": to_val, "labels": labels, "files": sorted(paths[i].name for i in members)}
        )
    sizes = np.array([len(g["files"]) for g in report])
    val = [g for g in report if g["validation"]]
    summary = {
        "pairs_verified": len(pairs),
        "copies": int(sum(s >= audit.SAME for _, _, s in scores)),
        "groups": len(report),
        "group_size": {"median": float(np.median(sizes)), "max": int(sizes.max())},
        "groups_with_both_labels": sum(len(g["labels"]) == 2 for g in report),
        "validation_groups": len(val),
        "validation_photos": int(sum(len(g["files"]) for g in val)),
    }
    (out.parent / f"{out.name}.groups.json").write_text(json.dumps({"summary": summary, "groups": report}))
    print(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
