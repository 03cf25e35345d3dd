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
