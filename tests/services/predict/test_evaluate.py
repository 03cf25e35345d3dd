"""`partcheck evaluate`'s counts on a tiny labelled folder whose right answers are known."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.predict.onnx_backend import OnnxClassifier
from services.predict.train.evaluate import EvalResult, Row, evaluate_folder, format_band, format_text
from tests.services.predict import tiny_model
from tests.services.predict.tiny_model import textured

pytestmark = pytest.mark.unit


def make_folder(root: Path) -> Path:
    """tiny says defect for bright, ok for dark, unclear for middle grey frames."""
    (root / "def_front").mkdir(parents=True)
    (root / "ok_front").mkdir()
    for i in range(5):
        (root / "def_front" / f"bright_{i}.png").write_bytes(textured(170, i))
    for i in range(4):
        (root / "ok_front" / f"dark_{i}.png").write_bytes(textured(80, i))
    (root / "def_front" / "escape.png").write_bytes(textured(80, 9))  # a defect tiny calls ok
    (root / "ok_front" / "false_reject.png").write_bytes(textured(170, 9))
    (root / "ok_front" / "middle.png").write_bytes(textured(128, 9))  # p_defect ~0.5: unclear
    (root / "ok_front" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "ok_front" / "notes.txt").write_text("ignored: not an image suffix")
    return root


def test_counts_on_a_known_folder(tmp_path: Path) -> None:
    clf = OnnxClassifier(tiny_model.build(tmp_path / "model"))
    result = evaluate_folder(clf, make_folder(tmp_path / "data"))
    s = result.summary()
    assert s["n"] == 13
    assert (s["n_ok"], s["n_defect"]) == (7, 6)
    assert s["escapes"] == 1
    assert s["false_rejects"] == 1
    assert s["unclear"] == 1
    assert s["rejected"] == 1
    assert s["decided"] == 11
    assert s["decided_accuracy"] == pytest.approx(9 / 11)
    assert s["unclear_rate"] == pytest.approx(1 / 13)
    # Top label without abstaining: 9 right (5 bright defects, 4 dark oks). middle is unclear at the band
    # but its top label is defect (tiny's p_defect 0.57 for grey 128), so it is wrong like the escape,
    # the false reject and the broken file.
    middle = next(r for r in result.rows if r.path.endswith("middle.png"))
    assert middle.p_defect is not None
    assert 0.55 < middle.p_defect < 0.6
    assert s["accuracy"] == pytest.approx(9 / 13)
    assert s["confusion"]["counts"] == [[4, 1, 1, 1], [1, 5, 0, 0]]
    # Defect is positive: tp 5 bright, fp 2 (false_reject, middle), fn 1 (escape).
    assert s["precision"] == pytest.approx(5 / 7)
    assert s["recall"] == pytest.approx(5 / 6)
    assert s["f1"] == pytest.approx(10 / 13)
    assert (s["skipped"], s["skipped_files"]) == (1, ["ok_front/notes.txt"])
    assert s["missing_classes"] == []
    assert s["thresholds"] == {"t_ok": 0.8, "t_defect": 0.8}
    assert s["latency_ms_p50"] > 0
    assert "escapes 1" in format_text(result)


def test_report_writes_plots_and_summary(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from services.predict.train.report import write_report

    clf = OnnxClassifier(tiny_model.build(tmp_path / "model"))
    result = evaluate_folder(clf, make_folder(tmp_path / "data"))
    files = write_report(result, tmp_path / "report")
    names = {f.name for f in files}
    assert names == {"confusion.png", "reliability.png", "risk_coverage.png", "summary.md"}
    for f in files:
        assert f.stat().st_size > 0
    assert (tmp_path / "report" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "escape.png" in summary
    assert "| escapes | 1 |" in summary


def test_folder_without_the_layout_is_refused(tmp_path: Path) -> None:
    from partcheck.errors import InvalidInput

    clf = OnnxClassifier(tiny_model.build(tmp_path / "model"))
    with pytest.raises(InvalidInput, match="neither def_front"):
        evaluate_folder(clf, tmp_path / "model")


def test_accuracy_counts_the_network_label_on_frames_the_checks_refuse(tmp_path: Path) -> None:
    import io

    from PIL import Image

    def blank(level: int) -> bytes:
        buf = io.BytesIO()
        Image.new("L", (64, 64), level).save(buf, "PNG")
        return buf.getvalue()

    root = tmp_path / "data"
    (root / "def_front").mkdir(parents=True)
    (root / "ok_front").mkdir()
    # Flat frames fail the quality checks (unclear, no verdict); tiny's own label is still right on both.
    (root / "def_front" / "bright_blank.png").write_bytes(blank(225))
    (root / "ok_front" / "dark_blank.png").write_bytes(blank(40))
    (root / "ok_front" / "dark.png").write_bytes(textured(80, 1))
    clf = OnnxClassifier(tiny_model.build(tmp_path / "model"))
    s = evaluate_folder(clf, root).summary()
    assert s["unclear"] == 2
    assert s["refused_by_checks"] == 2
    assert s["escapes"] == 0
    assert s["false_rejects"] == 0
    assert s["accuracy"] == pytest.approx(1.0)
    assert s["recall"] == pytest.approx(1.0)


def test_model_p_defect_skips_the_gates_and_marks_undecodable(tmp_path: Path) -> None:
    clf = OnnxClassifier(tiny_model.build(tmp_path / "model"))
    bright, broken = textured(200, 0), b"not an image"
    p = clf.model_p_defect([bright, broken])
    assert p[1] is None
    assert p[0] is not None
    assert p[0] > 0.99
    assert clf.predict_many([bright])[0].p_defect == pytest.approx(p[0])


def test_odd_files_are_skipped_aloud_and_subfolders_counted(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    (root / "def_front" / "batch2").mkdir()
    (root / "def_front" / "batch2" / "bright_sub.png").write_bytes(textured(170, 3))
    (root / "def_front" / "._bright_0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "ok_front" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "ok_front" / "DARK_UPPER.PNG").write_bytes(textured(80, 5))
    clf = OnnxClassifier(tiny_model.build(tmp_path / "model"))
    result = evaluate_folder(clf, root)
    s = result.summary()
    # The subfolder's photo and the upper-case suffix count; the macOS metadata files are not photos.
    assert (s["n_ok"], s["n_defect"]) == (8, 7)
    assert s["rejected"] == 1  # broken.jpg only
    assert s["skipped_files"] == ["ok_front/.DS_Store", "ok_front/notes.txt", "def_front/._bright_0.png"]
    assert "warning: 3 files skipped" in format_text(result)


def test_a_missing_class_folder_is_said_aloud(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    for f in (root / "def_front").iterdir():
        f.unlink()
    (root / "def_front").rmdir()
    clf = OnnxClassifier(tiny_model.build(tmp_path / "model"))
    result = evaluate_folder(clf, root)
    assert result.summary()["missing_classes"] == ["def_front"]
    assert "warning: no def_front/ folder: only one class was evaluated" in format_text(result)


def test_an_unreadable_file_is_a_rejected_image_not_the_end_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_folder(tmp_path / "data")
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "dark_0.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    clf = OnnxClassifier(tiny_model.build(tmp_path / "model"))
    s = evaluate_folder(clf, root).summary()
    assert s["n"] == 13
    assert s["rejected"] == 2
    assert s["confusion"]["counts"][0] == [3, 1, 1, 2]


def _rows(*spec: tuple[int, str, float | None, str | None]) -> EvalResult:
    result = EvalResult("m", "1", {"t_ok": 0.8, "t_defect": 0.8}, "data")
    result.rows = [Row(f"{i}.png", t, v, p, None, reason, 1.0) for i, (t, v, p, reason) in enumerate(spec)]
    return result


def test_chosen_band_sits_above_the_hard_photos_and_ignores_the_refused_ones() -> None:
    result = _rows(
        (1, "defect", 0.9, None),
        (1, "defect", 0.8, None),
        (1, "unclear", 0.3, "below threshold: p_ok 0.7 < 0.8"),  # the most ok-looking defect
        (0, "ok", 0.1, None),
        (0, "ok", 0.2, None),
        (0, "unclear", 0.6, "below threshold: p_defect 0.6 < 0.8"),  # the most defect-looking ok part
        (0, "unclear", 0.05, "out of distribution: not like the training parts (OOD score 9 > 2)"),
        # Refused by a check: its p_defect is the network's alone and must not move the band.
        (0, "unclear", 0.99, "blurred: sharpness 0.01 < 0.1"),
        (1, "rejected", None, "not an image"),
    )
    band = result.chosen_band(0.0)
    assert 0.7 < band["t_ok"] < 0.7 + 1e-9
    assert 0.6 < band["t_defect"] < 0.6 + 1e-9
    # Unclear: the two hard photos, the out-of-distribution one (at any band) and the refused one.
    assert band["unclear_rate"] == pytest.approx(4 / 9)
    assert (band["refused_by_checks"], band["out_of_distribution"], band["rejected"]) == (1, 1, 1)
    assert [r["margin"] for r in band["by_margin"]] == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    text = format_band(band)
    # Every digit: a band one float above a photo must not be printed below it.
    assert f"PARTCHECK_PREDICT_T_OK={band['t_ok']!r} " in text
    assert float(text.split("PARTCHECK_PREDICT_T_OK=")[1].split()[0]) == band["t_ok"]
    assert "in sample" in text
    # A wider margin moves both sides out by the same logits.
    assert result.chosen_band(1.0)["t_ok"] > band["t_ok"]


def test_a_band_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="ok and defect photos"):
        _rows((0, "ok", 0.1, None), (1, "unclear", 0.5, "blurred: sharpness 0 < 0.1")).chosen_band(0.5)
