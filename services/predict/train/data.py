"""The labelled folder layout (def_front/, ok_front/), the deterministic split and the decoded-image cache."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from partcheck.errors import InvalidInput
from services.predict.framing import Framing
from services.predict.preprocess import preprocess
from services.predict.train.config import path_from_card
from services.predict.train.variants import extract_stamp

# Folder names of the original data set and of the held-out set; label index 1 = defect.
CLASS_DIRS = {"ok_front": 0, "def_front": 1}
LABELS = ("ok", "defect")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
# Real rim pinholes marked on training photos of the casting data set (how they were found: its "about").
PINHOLE_MARKS = Path(__file__).with_name("pinholes.json")


@dataclass(frozen=True)
class Item:
    """One labelled image file."""

    path: Path
    label: int


@dataclass(frozen=True)
class Listing:
    """What a labelled folder holds: its images, the files left out, and class folders it lacks."""

    items: list[Item]
    skipped: list[Path]
    missing: list[str]


def scan_folder(data_dir: Path) -> Listing:
    """Every image under def_front/ and ok_front/ (subfolders included, labelled by the class folder).

    Sorted by path. Hidden files (macOS `._` copies, `.DS_Store`) and files without an image suffix are
    listed in `skipped` instead of being counted as broken images; a folder without either class
    folder, or without any image, is refused.
    """
    if not data_dir.is_dir():
        raise InvalidInput(f"{data_dir} is not a directory")
    missing = [name for name in CLASS_DIRS if not (data_dir / name).is_dir()]
    if len(missing) == len(CLASS_DIRS):
        raise InvalidInput(f"{data_dir} has neither def_front/ nor ok_front/")
    items: list[Item] = []
    skipped: list[Path] = []
    for name, label in CLASS_DIRS.items():
        root = data_dir / name
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
            if hidden or path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append(path)
            else:
                items.append(Item(path, label))
    if not items:
        raise InvalidInput(f"no images under {data_dir}/def_front or {data_dir}/ok_front")
    return Listing(items, skipped, missing)


def list_items(data_dir: Path) -> list[Item]:
    """The images of `scan_folder`, sorted by path; refuses photos in subfolders of a class folder.

    Training, its split, the data hash and the pinhole marks key on file names: two photos of one name in
    different subfolders would collide, so only `partcheck evaluate` reads subfolders.
    """
    items = scan_folder(data_dir).items
    nested = [it.path for it in items if it.path.parent.name not in CLASS_DIRS]
    if nested:
        raise InvalidInput(
            f"{len(nested)} photos sit in subfolders of a class folder (first: {nested[0]}); training "
            "reads def_front/ and ok_front/ directly"
        )
    return items


def is_validation(
    path: Path, fraction: float, groups: Mapping[str, str] | None = None, fold: int = 0
) -> bool:
    """Deterministic split by a hash of the file name: stable across machines, runs and folder moves.

    With `groups` (file name -> its copy group's key, from `load_groups`) a photo goes where its group's
    key goes, so every copy of one photo lands on the same side. Validation is the hash range
    [fold * fraction, (fold + 1) * fraction): fold 0 is the split every model before session 19 used, and
    folds 0 to 1/fraction - 1 cover every photo once (cross-validation).
    """
    check_fold(fraction, fold)
    return fold * fraction <= _hash_position(path, groups) < (fold + 1) * fraction


def _hash_position(path: Path, groups: Mapping[str, str] | None) -> float:
    """Where the file name (or its group's key) falls in [0, 1): the split's only input."""
    name = groups.get(path.name, path.name) if groups else path.name
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2**64


def check_fold(fraction: float, fold: int) -> None:
    """Refuse a validation fold that does not fit in the hash range."""
    # A small tolerance, so 5 folds of 0.2 reach 1.0 despite 4 * 0.2 + 0.2 rounding.
    if fold < 0 or (fold + 1) * fraction > 1 + 1e-9:
        raise InvalidInput(
            f"validation fold {fold} does not fit: "
            f"folds of {fraction} run from 0 to {int(1 / fraction + 1e-9) - 1}"
        )


def split(
    items: list[Item], fraction: float, groups: Mapping[str, str] | None = None, fold: int = 0
) -> tuple[list[Item], list[Item]]:
    """(train, validation) by file-name hash, or by copy-group hash with `groups`."""
    check_fold(fraction, fold)
    low, high = fold * fraction, (fold + 1) * fraction
    train: list[Item] = []
    val: list[Item] = []
    for it in items:
        # The fold is checked once above, not again for every photo as `is_validation` would.
        (val if low <= _hash_position(it.path, groups) < high else train).append(it)
    return train, val


@dataclass(frozen=True)
class SplitSpec:
    """Which photos are validation: a hash range of each file name, or of its near-duplicate group's key."""

    fraction: float = 0.2
    fold: int = 0
    # A groups file from `partcheck audit-data --groups`; None splits by file name.
    groups: Path | None = None

    def __post_init__(self) -> None:
        check_fold(self.fraction, self.fold)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SplitSpec:
        """The split a model card's `training.config` records (cards before session 19 have no fold)."""
        groups = path_from_card(config["groups"]) if config.get("groups") else None
        return cls(float(config["val_fraction"]), int(config.get("val_fold", 0)), groups)

    @cached_property
    def group_keys(self) -> dict[str, str] | None:
        """File name -> its group's key (`load_groups`), read once; None without a groups file."""
        return load_groups(self.groups) if self.groups is not None else None

    def apply(self, items: list[Item]) -> tuple[list[Item], list[Item]]:
        """(train, validation)."""
        return split(items, self.fraction, self.group_keys, self.fold)

    def describe(self) -> str:
        """The split in words, for the model card (fold 0 keeps the wording of earlier cards)."""
        key = "sha256(copy group's first file name)" if self.groups is not None else "sha256(file name)"
        if self.fold == 0:
            return f"{key} < {self.fraction} -> validation"
        return f"{self.fold * self.fraction:g} <= {key} < {(self.fold + 1) * self.fraction:g} -> validation"


def load_groups(path: Path) -> dict[str, str]:
    """File name -> its copy group's key (the group's first file name), from `partcheck audit-data --groups`.

    Names are keyed without their class folder, as the split is: a copy filed under the other label
    belongs to the same group. An optional "salt" string is put before every key, which deals the groups
    to the two sides anew: for measuring the split's spread over several draws.
    """
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"copy groups {path} cannot be read: {exc}") from exc
    groups = raw.get("groups") if isinstance(raw, dict) else None
    if not isinstance(groups, list) or not all(
        isinstance(g, list) and g and all(isinstance(n, str) for n in g) for g in groups
    ):
        raise InvalidInput(f"copy groups {path}: expected {{'groups': [[file name, ...], ...]}}")
    salt = raw.get("salt", "")
    if not isinstance(salt, str):
        raise InvalidInput(f"copy groups {path}: 'salt' must be a string")
    key_of: dict[str, str] = {}
    for group in groups:
        names = {Path(n).name for n in group}
        if twice := names & key_of.keys():
            raise InvalidInput(f"copy groups {path}: {min(twice)} is in two groups")
        key_of.update(dict.fromkeys(names, salt + min(names)))
    return key_of


def data_hash(items: list[Item]) -> str:
    """sha256 over every (class folder, file name, content digest) in order: identifies the training data."""
    h = hashlib.sha256()
    for it in items:
        h.update(f"{it.path.parent.name}/{it.path.name}\0".encode())
        h.update(hashlib.sha256(it.path.read_bytes()).digest())
    return h.hexdigest()


def as_uint8(payload: bytes, size: int, framing: Framing | None = None) -> np.ndarray:
    """One photo's bytes through the shared `preprocess`, as training holds it: uint8 (size, size)."""
    return np.round(preprocess(payload, size, framing) * 255.0).astype(np.uint8)


def load_arrays(
    items: list[Item],
    size: int,
    progress: Callable[[int], None] | None = None,
    framing: Framing | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images through the shared `preprocess` as uint8 (N, size, size) plus labels (N,)."""
    images = np.empty((len(items), size, size), dtype=np.uint8)
    labels = np.empty(len(items), dtype=np.int64)
    for i, it in enumerate(items):
        images[i] = as_uint8(it.path.read_bytes(), size, framing)
        labels[i] = it.label
        if progress is not None:
            progress(1)
    return images, labels


def load_pinhole_marks(path: Path) -> list[tuple[str, int, int]]:
    """(file name, row, column) of each pinhole marked in a JSON file `{"marks": [{"file", "y", "x"}]}`."""
    try:
        doc = json.loads(path.read_text())
        return [(str(m["file"]), int(m["y"]), int(m["x"])) for m in doc["marks"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a pinhole marks file ({exc})") from exc


def _marked_training_defects(
    marks: list[tuple[str, int, int]], train_items: list[Item], val_items: list[Item]
) -> list[tuple[Item, int, int]]:
    """Each mark with its training item; a mark on a validation photo or on no training defect is refused."""
    where = {it.path.name: it for it in train_items if it.label == 1}
    in_val = {it.path.name for it in val_items}
    out = []
    for name, y, x in marks:
        if name in in_val:
            raise ValueError(f"pinhole marked on {name}, a validation photo; mark training photos only")
        if name not in where:
            raise ValueError(f"pinhole marked on {name}, which is not a training defect photo here")
        out.append((where[name], y, x))
    if not out:
        raise ValueError("the pinhole marks file marks no pinhole")
    return out


def pinhole_stamps(
    marks: list[tuple[str, int, int]], train_items: list[Item], val_items: list[Item], size: int
) -> np.ndarray:
    """The marked pinholes cut from their training photos (`variants.extract_stamp`), (K, 2r+1, 2r+1).

    A mark on a validation photo is refused: copying its pinhole into training would leak validation.
    Positions are read in the frame of `size` px photos; the committed marks are in 300 px ones.
    """
    return np.stack(
        [
            extract_stamp(preprocess(it.path.read_bytes(), size), y, x)
            for it, y, x in _marked_training_defects(marks, train_items, val_items)
        ]
    )


def marked_indices(
    marks: list[tuple[str, int, int]], train_items: list[Item], val_items: list[Item]
) -> np.ndarray:
    """Positions in `train_items` of the photos that carry a mark, each once, ascending."""
    marked = {it.path for it, _, _ in _marked_training_defects(marks, train_items, val_items)}
    return np.array([i for i, it in enumerate(train_items) if it.path in marked], dtype=np.int64)
