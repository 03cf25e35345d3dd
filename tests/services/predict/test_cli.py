"""`partcheck predict` and `partcheck evaluate` through the real command line (typer's runner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from partcheck.cli import app
from tests.services.predict import tiny_model
from tests.services.predict.test_evaluate import make_folder
from tests.services.predict.tiny_model import textured

pytestmark = pytest.mark.unit

runner = CliRunner()


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_model.build(tmp_path / "model")


def test_predict_json_one_line_per_file(tiny: Path, tmp_path: Path) -> None:
    bright = tmp_path / "bright.png"
    bright.write_bytes(textured(170))
    dark = tmp_path / "dark.png"
    dark.write_bytes(textured(80))
    result = runner.invoke(app, ["predict", "--json", "--model", str(tiny), str(bright), str(dark)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["file"], line["label"]) for line in lines] == [(str(bright), "defect"), (str(dark), "ok")]
    assert lines[0]["model_name"] == "tiny"
    assert 0.0 <= lines[0]["confidence"] <= 1.0


def test_predict_bad_file_is_reported_and_exit_code_is_1(tiny: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(textured(80))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    missing = tmp_path / "missing.jpg"
    result = runner.invoke(app, ["predict", "--model", str(tiny), str(good), str(bad), str(missing)])
    assert result.exit_code == 1
    assert f"{good}: ok" in result.stdout
    assert f"{bad}: rejected: not a recognised image file" in result.stdout
    assert f"{missing}: rejected:" in result.stdout


def test_predict_missing_model_exits_2_with_message(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    img.write_bytes(textured(80))
    result = runner.invoke(app, ["predict", "--model", str(tmp_path / "none.onnx"), str(img)])
    assert result.exit_code == 2
    assert "not found" in result.output


def test_evaluate_json_has_the_documented_keys(tiny: Path, tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    result = runner.invoke(app, ["evaluate", "--data", str(data), "--model", str(tiny), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    for key in (
        "n",
        "accuracy",
        "f1",
        "escapes",
        "false_rejects",
        "unclear",
        "unclear_rate",
        "decided_accuracy",
        "thresholds",
        "latency_ms_p50",
    ):
        assert key in summary
    assert (summary["n"], summary["escapes"], summary["false_rejects"]) == (13, 1, 1)


def test_evaluate_bad_folder_exits_2(tiny: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "nope"), "--model", str(tiny)])
    assert result.exit_code == 2
    assert "not a directory" in result.output


def test_train_refuses_a_pit_map_without_pitted_copies(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--pit-aux-weight", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "synth_pit_pairs" in result.output
    assert not (tmp_path / "m").exists()


def _trained_like(tiny: Path) -> Path:
    """tiny's card with the training fields `check-model` reads, as `partcheck train` writes them."""
    card_path = tiny.with_name("tiny.card.json")
    card = json.loads(card_path.read_text())
    card["ood"] = {"threshold": 5.0, "quantile": 0.999, "factor": 1.0}
    card["training"] = {
        "config": {"val_fraction": 0.5},
        "data_dir": "samples",
        "data_sha256": "0" * 64,
        "counts": {"train": {"ok": 6, "defect": 6}, "validation": {"ok": 6, "defect": 6}},
        "split": "sha256(file name) < 0.5 -> validation",
        "seconds": 1.0,
    }
    card["size_bytes"] = tiny.stat().st_size
    card["input"]["preprocessing"] = "services.predict.preprocess.preprocess"
    card["metrics"] = {}
    card_path.write_text(json.dumps(card))
    return card_path


def test_check_model_recalibrates_the_limits_and_records_itself(
    tiny: Path, tmp_path: Path, sample_images: dict[str, list[Path]]
) -> None:
    from services.predict import quality
    from services.predict.train.variants import VARIANTS

    card_path = _trained_like(tiny)
    data = tmp_path / "data"
    for label, folder in (("defect", "def_front"), ("ok", "ok_front")):
        (data / folder).mkdir(parents=True)
        for p in sample_images[label]:
            (data / folder / p.name).write_bytes(p.read_bytes())
    result = runner.invoke(app, ["check-model", "--model", str(tiny), "--data", str(data)])
    assert result.exit_code == 0, result.output
    card = json.loads(card_path.read_text())
    assert card["checks"]["command"].startswith("partcheck check-model")
    assert card["scene"]["descriptor"] == quality.DESCRIPTOR
    assert len(card["scene"]["mean"]) == 3 * quality.RINGS
    assert card["quality"]["min_sharpness"] > 0
    assert set(card["metrics"]["reframed"]) == {v.name for v in VARIANTS}
    all_sets = card["metrics"]["band_all_sets"]
    assert set(all_sets["unclear_rate"]) == {"validation"} | {v.name for v in VARIANTS}
    pits = card["metrics"]["pit_sensitivity"]
    assert {k for k in pits if k != "sigma_px"} == {"0.00", "0.15", "0.30", "0.50"}
    for verdicts in (v for k, v in pits.items() if k != "sigma_px"):
        assert verdicts["n"] > 0
        assert verdicts["ok"] + verdicts["unclear"] + verdicts["defect"] == pytest.approx(1.0)
    # The committed pinhole marks are on photos of the casting data set, not on these samples: no stamps.
    assert "pinhole_sensitivity" not in card["metrics"]
    n_val = card["metrics"]["validation_onnx"]["n"]
    assert 0 < n_val < len(sample_images["defect"]) + len(sample_images["ok"])
    model_card = tiny.with_name("MODEL_CARD.md").read_text()
    assert "re-checked" in model_card
    assert "One band with no escape and no false reject on validation and all six" in model_card
    assert "| pit depth | n | ok | unclear | defect |" in model_card
    # Whatever tiny's verdicts are, nothing synthetic may get one: the scene and quality checks stop them.
    assert all(c["verdict"] == 0 for c in card["metrics"]["synthetic_ood"].values())


def test_check_model_refuses_a_model_its_card_does_not_describe(tiny: Path, tmp_path: Path) -> None:
    _trained_like(tiny)
    tiny.write_bytes(tiny.read_bytes() + b"\0")
    result = runner.invoke(app, ["check-model", "--model", str(tiny), "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "does not match its card" in result.output


def test_a_card_fitted_on_another_scene_descriptor_is_refused_with_the_fix() -> None:
    from services.predict import quality

    old = {"mean": [0.0] * 24, "precision": [[1.0] * 24] * 24, "threshold": 2.0}
    with pytest.raises(ValueError, match="partcheck check-model"):
        quality.SceneModel.from_dict(old)
