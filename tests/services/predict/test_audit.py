"""The data audit: one photo filed under both labels, and copies across the train/validation split."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from partcheck.cli import app
from partcheck.errors import InvalidInput
from services.predict.train.audit import (
    SAME,
    _coarse_turn,
    _Prepared,
    audit,
    audit_against,
    copy_groups,
    nearest,
    same_photo,
    shifted_detail,
    signature,
)
from services.predict.train.data import Item, is_validation, list_items, load_groups, scan_folder, split

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
runner = CliRunner()


def sample(name: str) -> Image.Image:
    return Image.open(SAMPLES / name).convert("L")


def copy_of(img: Image.Image, angle: float, mirrored: bool) -> bytes:
    """What an augmenting data set author makes: the photo turned, maybe mirrored, saved again as JPEG."""
    turned = (img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else img).rotate(
        angle, resample=Image.Resampling.BILINEAR
    )
    out = io.BytesIO()
    turned.save(out, "JPEG", quality=85)
    return out.getvalue()


def test_signature_is_the_same_for_the_photo_turned_or_mirrored() -> None:
    img = sample("cast_def_0_0.jpeg")
    base = signature(img)
    assert np.allclose(signature(img.transpose(Image.Transpose.ROTATE_90)), base)
    assert np.allclose(signature(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), base)
    assert not np.allclose(signature(sample("cast_ok_0_1002.jpeg")), base, atol=1.0)


@pytest.mark.parametrize(("angle", "mirrored"), [(100.5, True), (37.0, False), (0.0, False)])
def test_a_turned_mirrored_reencoded_copy_is_one_photo(angle: float, mirrored: bool) -> None:
    img = sample("cast_ok_0_1002.jpeg")
    copy = Image.open(io.BytesIO(copy_of(img, angle, mirrored))).convert("L")
    assert same_photo(img, copy) >= SAME
    assert same_photo(copy, img) >= SAME


@pytest.mark.parametrize(("angle", "mirrored"), [(37.0, False), (200.0, True), (359.0, False)])
def test_the_coarse_turn_undoes_a_known_turn(angle: float, mirrored: bool) -> None:
    img = sample("cast_def_0_1000.jpeg")
    copy = Image.open(io.BytesIO(copy_of(img, angle, mirrored))).convert("L")
    found, found_mirrored = _coarse_turn(_Prepared(img), copy)
    assert found_mirrored is mirrored
    # The copy was mirrored, then turned: mirroring it back reverses that turn, so only an unmirrored
    # copy is turned back by the opposite angle. To within the 1-degree grid.
    back = angle if mirrored else -angle
    assert abs((found - back + 180) % 360 - 180) <= 1.0


def test_photos_of_two_castings_are_not_one_photo() -> None:
    a, b = sample("cast_def_0_0.jpeg"), sample("cast_ok_0_1002.jpeg")
    assert same_photo(a, b) < 0.4
    # One pose and one lighting, two castings: whole photos correlate highly, their detail does not.
    assert same_photo(sample("cast_ok_0_1005.jpeg"), sample("cast_ok_0_1002.jpeg")) < SAME


def test_a_flat_frame_is_a_copy_of_nothing() -> None:
    flat = Image.new("L", (300, 300), 128)
    assert same_photo(flat, sample("cast_def_0_0.jpeg")) < SAME
    assert same_photo(sample("cast_def_0_0.jpeg"), flat) < SAME


def test_shifted_detail_equals_one_masked_correlation_per_shift() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 50))
    b = np.roll(x, (2, -3), axis=(0, 1)) + rng.normal(scale=0.5, size=x.shape)
    mask = rng.random(x.shape) < 0.6
    direct = max(
        float(np.corrcoef(x[mask], np.roll(b, (-dy, -dx), axis=(0, 1))[mask])[0, 1])
        for dy in range(-4, 5)
        for dx in range(-4, 5)
    )
    assert shifted_detail(x, mask, b, 4) == pytest.approx(direct, abs=1e-12)
    assert direct > 0.8  # the planted shift (2, -3) is found, inside the search
    assert shifted_detail(x, mask, b, 1) < 0.2  # and not within 1 px
    assert shifted_detail(np.ones_like(x), mask, b, 4) == 0.0


def test_nearest_in_blocks_equals_the_brute_force_answer() -> None:
    rng = np.random.default_rng(0)
    sig = rng.normal(size=(700, 12))  # more rows than one block
    d = ((sig[:, None] - sig[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert np.array_equal(nearest(sig, 4), np.argsort(d, axis=1)[:, :4])
    assert nearest(sig[:3], 10).shape == (3, 2)


def _name_on_side(stem: str, validation: bool) -> str:
    """A file name the 0.2 split puts on the given side."""
    return next(n for k in range(1000) if is_validation(Path(n := f"{stem}_{k}.jpeg"), 0.2) == validation)


CONFLICT = f"def_front/{_name_on_side('from_ok', validation=False)}"
VAL_COPY = f"def_front/{_name_on_side('dup', validation=True)}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audit")
    (root / "def_front").mkdir()
    (root / "ok_front").mkdir()
    for name in ("cast_def_0_0.jpeg", "cast_def_0_1000.jpeg"):
        shutil.copy(SAMPLES / name, root / "def_front" / name)
    for name in ("cast_ok_0_1002.jpeg", "cast_ok_0_1005.jpeg"):
        shutil.copy(SAMPLES / name, root / "ok_front" / name)
    # An ok photo, turned and mirrored, filed as a defect (both on the training side of the split).
    assert not is_validation(Path("cast_ok_0_1002.jpeg"), 0.2)
    (root / CONFLICT).write_bytes(copy_of(sample("cast_ok_0_1002.jpeg"), 71.5, True))
    # A training defect's copy under a name the split puts in validation.
    assert not is_validation(Path("cast_def_0_1000.jpeg"), 0.2)
    (root / VAL_COPY).write_bytes(copy_of(sample("cast_def_0_1000.jpeg"), 200.0, False))
    return root


def test_audit_finds_the_photo_under_both_labels_and_the_copy_across_the_split(folder: Path) -> None:
    found = audit(list_items(folder), lambda it: str(it.path.relative_to(folder)), 0.2)
    assert [(c.a, c.b) for c in found.conflicts] == [(CONFLICT, "ok_front/cast_ok_0_1002.jpeg")]
    assert found.conflict_photos == [CONFLICT, "ok_front/cast_ok_0_1002.jpeg"]
    assert [(c.a, c.b) for c in found.across_split] == [(VAL_COPY, "def_front/cast_def_0_1000.jpeg")]
    assert found.photos == 6
    assert found.validation == 1
    assert len(found.scores) == found.pairs_verified
    summary = found.summary()
    assert sum(summary["score_histogram"].values()) == found.pairs_verified  # type: ignore[attr-defined]


def test_cli_json_and_exit_code_on_conflicts(folder: Path) -> None:
    result = runner.invoke(app, ["audit-data", "--data", str(folder), "--json", "--fail-on-conflicts"])
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert [(c["a"], c["b"]) for c in out["conflicts"]] == [(CONFLICT, "ok_front/cast_ok_0_1002.jpeg")]
    assert out["validation_with_copy_in_training"] == 1
    text = runner.invoke(app, ["audit-data", "--data", str(folder)])
    assert text.exit_code == 0, text.output
    assert f"{CONFLICT}  =  ok_front/cast_ok_0_1002.jpeg" in text.stdout
    assert "filed under both labels: 1 pairs, 2 photos" in text.stdout


def test_cli_names_an_unreadable_photo_and_a_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "ok_front").mkdir()
    shutil.copy(SAMPLES / "cast_ok_0_1002.jpeg", tmp_path / "ok_front")
    (tmp_path / "ok_front" / "broken.jpeg").write_bytes(b"not a jpeg")
    result = runner.invoke(app, ["audit-data", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "broken.jpeg cannot be read as an image" in result.output
    missing = runner.invoke(app, ["audit-data", "--data", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert "is not a directory" in missing.output


def test_a_copy_saved_at_another_size_is_found(tmp_path: Path) -> None:
    (tmp_path / "def_front").mkdir()
    (tmp_path / "ok_front").mkdir()
    shutil.copy(SAMPLES / "cast_def_0_0.jpeg", tmp_path / "def_front")
    for name in ("cast_ok_0_1002.jpeg", "cast_ok_0_1005.jpeg"):
        shutil.copy(SAMPLES / name, tmp_path / "ok_front")
    larger = sample("cast_ok_0_1002.jpeg").resize((512, 512), Image.Resampling.BICUBIC)
    (tmp_path / "def_front" / "larger.jpeg").write_bytes(copy_of(larger, 33.0, False))
    found = audit(list_items(tmp_path), lambda it: it.path.name, 0.2)
    assert [(c.a, c.b) for c in found.conflicts] == [("larger.jpeg", "cast_ok_0_1002.jpeg")]


def test_nearest_against_a_reference_equals_the_brute_force_answer() -> None:
    rng = np.random.default_rng(1)
    query, ref = rng.normal(size=(600, 8)), rng.normal(size=(50, 8))
    d = ((query[:, None] - ref[None]) ** 2).sum(-1)
    assert np.array_equal(nearest(query, 3, ref), np.argsort(d, axis=1)[:, :3])
    assert nearest(query[:2], 80, ref).shape == (2, 50)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A held-out folder: a copy of a reference defect, a copy of a reference ok part filed as a defect,
    and a photo the reference does not hold (in a subfolder, which a held-out folder may have)."""
    root = tmp_path_factory.mktemp("held_out")
    (root / "def_front").mkdir()
    (root / "ok_front" / "line2").mkdir(parents=True)
    (root / "def_front" / "same_label.jpeg").write_bytes(copy_of(sample("cast_def_0_0.jpeg"), 12.0, True))
    (root / "def_front" / "other_label.jpeg").write_bytes(
        copy_of(sample("cast_ok_0_1005.jpeg"), 250.0, False)
    )
    shutil.copy(SAMPLES / "cast_ok_0_1009.jpeg", root / "ok_front" / "line2" / "new.jpeg")
    return root


def test_audit_against_the_training_folder(held_out: Path, folder: Path) -> None:
    found = audit_against(
        scan_folder(held_out).items,
        list_items(folder),
        lambda it: str(it.path.relative_to(held_out)),
        lambda it: str(it.path.relative_to(folder)),
    )
    assert sorted((c.a, c.b) for c in found.copies) == [
        ("def_front/other_label.jpeg", "ok_front/cast_ok_0_1005.jpeg"),
        ("def_front/same_label.jpeg", "def_front/cast_def_0_0.jpeg"),
    ]
    assert [(c.a, c.b) for c in found.other_label] == [
        ("def_front/other_label.jpeg", "ok_front/cast_ok_0_1005.jpeg")
    ]
    assert (found.photos, found.reference) == (3, 6)


def test_cli_against(held_out: Path, folder: Path) -> None:
    args = ["audit-data", "--data", str(held_out), "--against", str(folder)]
    result = runner.invoke(app, [*args, "--json", "--fail-on-conflicts"])
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert (out["with_copy_in_reference"], out["with_copy_under_other_label"]) == (2, 1)
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    assert f"2 of 3 photos have a near-duplicate among the 6 of {folder}" in text.stdout
    assert "def_front/other_label.jpeg  =  ok_front/cast_ok_0_1005.jpeg" in text.stdout


def test_copy_groups_join_each_photo_with_its_copies(folder: Path) -> None:
    items = list_items(folder)
    expected = [
        sorted([CONFLICT, "ok_front/cast_ok_0_1002.jpeg"]),
        sorted([VAL_COPY, "def_front/cast_def_0_1000.jpeg"]),
    ]
    for workers in (1, 2):
        found = copy_groups(items, lambda it: str(it.path.relative_to(folder)), workers=workers)
        assert found.groups == sorted(expected)
        summary = found.summary()
        assert (summary["photos_in_groups"], summary["largest_group"], summary["pairs_same"]) == (4, 2, 2)


def test_a_group_goes_to_one_side_of_the_split(tmp_path: Path) -> None:
    # A group whose key (its first name) the split puts in validation, with members it would not.
    key = _name_on_side("a_key", validation=True)
    members = [_name_on_side(f"member{k}", validation=False) for k in range(3)]
    path = tmp_path / "groups.json"
    path.write_text(json.dumps({"groups": [[f"def_front/{key}", *(f"ok_front/{m}" for m in members)]]}))
    groups = load_groups(path)
    assert groups == dict.fromkeys([key, *members], key)
    loose = _name_on_side("loose", validation=False)
    items = [Item(Path(n), 0) for n in [key, *members, loose]]
    train, val = split(items, 0.2, groups)
    assert {it.path.name for it in val} == {key, *members}
    assert [it.path.name for it in train] == [loose]
    assert split(items, 0.2) == split(items, 0.2, {})  # no groups: the file-name split


def test_a_salt_deals_the_groups_anew_and_keeps_each_together(tmp_path: Path) -> None:
    groups = [[f"ok_front/g{k}_{m}.jpeg" for m in range(3)] for k in range(40)]
    path = tmp_path / "groups.json"
    items = [Item(Path(n).relative_to("ok_front"), 0) for g in groups for n in g]

    def validation_groups(salt: str | None) -> set[int]:
        path.write_text(json.dumps({"groups": groups} | ({"salt": salt} if salt is not None else {})))
        val = {it.path.name for it in split(items, 0.2, load_groups(path))[1]}
        names = [{Path(n).name for n in g} for g in groups]
        assert all(g <= val or not g & val for g in names)  # never split within a group
        return {k for k, g in enumerate(names) if g <= val}

    plain, salted = validation_groups(None), validation_groups("draw1:")
    assert plain
    assert salted
    assert plain != salted
    assert validation_groups("") == plain
    path.write_text(json.dumps({"groups": groups, "salt": 1}))
    with pytest.raises(InvalidInput, match="'salt' must be a string"):
        load_groups(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "cannot be read"),
        ('{"groups": [["a.jpeg"], "b.jpeg"]}', "expected"),
        ('{"groups": [[]]}', "expected"),
        ('{"groups": [["x/a.jpeg", "b.jpeg"], ["y/a.jpeg", "c.jpeg"]]}', "a.jpeg is in two groups"),
    ],
)
def test_a_broken_groups_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "groups.json"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message):
        load_groups(path)


def test_cli_groups(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "groups" / "copies.json"
    result = runner.invoke(app, ["audit-data", "--data", str(folder), "--groups", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["photos_in_groups"] == 4
    assert set(load_groups(out)) == {
        Path(n).name for n in (CONFLICT, VAL_COPY, "cast_ok_0_1002.jpeg", "cast_def_0_1000.jpeg")
    }
    both = runner.invoke(app, ["audit-data", "--data", str(folder), "--groups", str(out), "--against", "x"])
    assert both.exit_code == 2
    assert "pass one" in both.output
