"""Pinhole marks: read from their file, cut from training defect photos only, refused anywhere else."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from partcheck.errors import InvalidInput
from services.predict.train.data import (
    PINHOLE_MARKS,
    Item,
    list_items,
    load_pinhole_marks,
    marked_indices,
    pinhole_stamps,
    scan_folder,
)

pytestmark = pytest.mark.unit


def test_pinhole_marks_are_read_and_a_malformed_file_is_refused(tmp_path: Path) -> None:
    marks = tmp_path / "marks.json"
    marks.write_text('{"marks": [{"file": "cast_def_0_1.jpeg", "y": 40, "x": 41}]}')
    assert load_pinhole_marks(marks) == [("cast_def_0_1.jpeg", 40, 41)]
    marks.write_text('{"marks": [{"file": "cast_def_0_1.jpeg", "y": 40}]}')
    with pytest.raises(ValueError, match="not a pinhole marks file"):
        load_pinhole_marks(marks)
    with pytest.raises(ValueError, match="not a pinhole marks file"):
        load_pinhole_marks(tmp_path / "missing.json")


def test_the_committed_marks_are_on_training_photos_of_the_data_set() -> None:
    marks = load_pinhole_marks(PINHOLE_MARKS)
    assert len(marks) >= 10
    assert len({m[0] for m in marks}) == len(marks)
    doc = json.loads(PINHOLE_MARKS.read_text())
    assert "occlusion" in doc["about"]
    for name, y, x in marks:
        assert name.startswith("cast_def_0_")
        assert 0.45 < np.hypot(y - 149.5, x - 149.5) / 150 < 0.85  # on the flange


def test_pinhole_stamps_come_from_training_defects_only(tmp_path: Path) -> None:
    arr = np.full((60, 60), 200, dtype=np.uint8)
    arr[29:32, 29:32] = 120  # a pit
    (tmp_path / "a.png").write_bytes(_png(arr))
    train_items = [Item(tmp_path / "a.png", 1), Item(tmp_path / "b.png", 0)]
    val_items = [Item(tmp_path / "v.png", 1)]
    stamps = pinhole_stamps([("a.png", 30, 30)], train_items, val_items, 60)
    assert stamps.shape[0] == 1
    assert float(stamps[0].min()) == pytest.approx(120 / 200 - 1, abs=0.01)
    with pytest.raises(ValueError, match="validation photo"):
        pinhole_stamps([("v.png", 30, 30)], train_items, val_items, 60)
    with pytest.raises(ValueError, match="not a training defect photo"):
        pinhole_stamps([("b.png", 30, 30)], train_items, val_items, 60)
    with pytest.raises(ValueError, match="marks no pinhole"):
        pinhole_stamps([], train_items, val_items, 60)


def test_marked_indices_find_each_marked_training_defect_once(tmp_path: Path) -> None:
    train_items = [Item(tmp_path / n, label) for n, label in (("a", 0), ("b", 1), ("c", 1), ("d", 1))]
    val_items = [Item(tmp_path / "v", 1)]
    found = marked_indices([("d", 1, 1), ("b", 2, 2), ("d", 9, 9)], train_items, val_items)
    assert found.tolist() == [1, 3]
    with pytest.raises(ValueError, match="validation photo"):
        marked_indices([("v", 1, 1)], train_items, val_items)
    with pytest.raises(ValueError, match="not a training defect photo"):
        marked_indices([("a", 1, 1)], train_items, val_items)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_training_refuses_photos_in_subfolders_of_a_class_folder(tmp_path: Path) -> None:
    # The split and the data hash key on file names: the same name in two subfolders would collide.
    for sub in ("a", "b"):
        (tmp_path / "ok_front" / sub).mkdir(parents=True)
        (tmp_path / "ok_front" / sub / "x.png").write_bytes(b"png")
    (tmp_path / "def_front").mkdir()
    (tmp_path / "def_front" / "y.png").write_bytes(b"png")
    with pytest.raises(InvalidInput, match="2 photos sit in subfolders"):
        list_items(tmp_path)
    assert len(scan_folder(tmp_path).items) == 3  # evaluation reads them
