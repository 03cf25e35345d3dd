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


def test_evaluate_chooses_a_band_on_the_folder_when_asked(tiny: Path, tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    result = runner.invoke(
        app, ["evaluate", "--data", str(data), "--model", str(tiny), "--json", "--choose-band"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    band = summary["chosen_band"]
    assert band["margin"] == 0.5  # tiny's card records no training margin: the trainer's default
    # The band keeps this folder's escape and false reject (tiny's known mistakes) out of ok and defect.
    from services.predict.onnx_backend import OnnxClassifier
    from services.predict.train.evaluate import evaluate_folder

    rows = [r for r in evaluate_folder(OnnxClassifier(tiny), data).rows if r.p_defect is not None]
    assert band["t_ok"] > max(1 - r.p_defect for r in rows if r.truth == 1)  # type: ignore[operator]
    assert band["t_defect"] > max(r.p_defect for r in rows if r.truth == 0)  # type: ignore[type-var]
    assert band["rejected"] == 1
    text = runner.invoke(
        app, ["evaluate", "--data", str(data), "--model", str(tiny), "--choose-band", "--margin", "1"]
    )
    assert text.exit_code == 0, text.output
    assert "1-logit margin" in text.stdout
    assert "PARTCHECK_PREDICT_T_DEFECT=" in text.stdout
    plain = runner.invoke(app, ["evaluate", "--data", str(data), "--model", str(tiny), "--json"])
    assert "chosen_band" not in json.loads(plain.stdout)


def test_evaluate_measures_at_the_cards_band_whatever_the_service_settings(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_folder(tmp_path / "data")
    monkeypatch.setenv("PARTCHECK_PREDICT_THRESHOLD", "0.55")
    result = runner.invoke(app, ["evaluate", "--data", str(data), "--model", str(tiny), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["thresholds"] == {"t_ok": 0.8, "t_defect": 0.8}
    assert summary["unclear"] == 1
    assert "thresholds ignored" in result.stderr
    # The one file that is not an image is named where a person reading the run sees it.
    assert "1 files skipped" in result.stderr


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


def _trained_like(tiny: Path, data: Path | None = None) -> Path:
    """tiny's card with the training fields `check-model` reads, as `partcheck train` writes them."""
    from services.predict.train.data import data_hash, list_items

    card_path = tiny.with_name("tiny.card.json")
    card = json.loads(card_path.read_text())
    card["ood"] = {"threshold": 5.0, "quantile": 0.999, "factor": 1.0}
    card["training"] = {
        "config": {"val_fraction": 0.5},
        "data_dir": "samples",
        "data_sha256": data_hash(list_items(data)) if data is not None else "0" * 64,
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

    data = _sample_folder(tmp_path / "data", sample_images)
    card_path = _trained_like(tiny, data)
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
    halves = card["metrics"]["split_half"]
    assert set(halves) == {"a_to_b", "b_to_a"}
    refused = card["metrics"]["validation_onnx"]["refused_by_checks"]
    assert sum(r["n"] for r in halves.values()) == n_val - refused
    assert "Out of sample: the card's rule" in model_card
    risk = card["metrics"]["margin_risk"]
    assert [r["margin"] for r in risk] == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    assert all(0.0 <= r["cv_unclear_rate"] <= 1.0 for r in risk)
    assert "| margin (logits) | t_ok | t_defect |" in model_card
    # Whatever tiny's verdicts are, nothing synthetic may get one: the scene and quality checks stop them.
    assert all(c["verdict"] == 0 for c in card["metrics"]["synthetic_ood"].values())


def _sample_folder(root: Path, sample_images: dict[str, list[Path]]) -> Path:
    for label, folder in (("defect", "def_front"), ("ok", "ok_front")):
        (root / folder).mkdir(parents=True)
        for p in sample_images[label]:
            (root / folder / p.name).write_bytes(p.read_bytes())
    return root


def test_check_model_refuses_data_the_card_was_not_trained_on(
    tiny: Path, tmp_path: Path, sample_images: dict[str, list[Path]]
) -> None:
    data = _sample_folder(tmp_path / "data", sample_images)
    card_path = _trained_like(tiny, data)
    before = card_path.read_text()
    # Another folder (a held-out set, say): fitting the limits on it would tune on what measures them.
    other = make_folder(tmp_path / "other")
    result = runner.invoke(app, ["check-model", "--model", str(tiny), "--data", str(other)])
    assert result.exit_code == 2
    assert "is not the data the card was trained on" in result.output
    assert card_path.read_text() == before
    forced = ["check-model", "--model", str(tiny), "--data", str(data), "--force"]
    (data / "ok_front" / "extra.png").write_bytes(textured(80, 3))
    result = runner.invoke(app, forced)
    assert result.exit_code == 0, result.output
    assert json.loads(card_path.read_text())["checks"]["command"].endswith("--force")


def test_an_interrupted_check_leaves_the_card_as_it_was(
    tiny: Path, tmp_path: Path, sample_images: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.predict.onnx_backend import OnnxClassifier
    from services.predict.train.data import SplitSpec
    from services.predict.train.validate import validate_model

    data = _sample_folder(tmp_path / "data", sample_images)
    card_path = _trained_like(tiny, data)
    before = card_path.read_text()

    def stopped(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C after the scene and blur limits were written

    monkeypatch.setattr(OnnxClassifier, "__init__", stopped)
    with pytest.raises(KeyboardInterrupt):
        validate_model(tiny, data, SplitSpec(0.5))
    assert card_path.read_text() == before


def test_train_writes_the_markdown_card_from_the_checked_card(
    tiny: Path, tmp_path: Path, sample_images: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from services.predict.train import trainer

    data = _sample_folder(tmp_path / "data", sample_images)
    card_path = _trained_like(tiny, data)
    card = json.loads(card_path.read_text())
    card.update({"file": tiny.name, "version": "v", "created_at": "now", "command": "partcheck train"})
    card["quality"] = {"min_sharpness": 0.0}  # the trainer's preliminary limits, replaced by the checks
    card_path.write_text(json.dumps(card))
    # A finished training run stands in for the real one: this is about what happens after it.
    monkeypatch.setattr(trainer, "train", lambda cfg: json.loads(card_path.read_text()))
    args = ["train", "--data", str(data), "--out", str(tiny.parent), "--val-fraction", "0.5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    checked = json.loads(card_path.read_text())
    assert checked["ood"]["threshold"] != 5.0
    markdown = tiny.with_name("MODEL_CARD.md").read_text()
    assert f"Mahalanobis score > {checked['ood']['threshold']:.2f} " in markdown
    assert f"quality limits: {json.dumps(checked['quality'])}." in markdown
    assert checked["quality"]["min_sharpness"] > 0.0


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
