"""The ONNX backend with a tiny model of known behaviour: verdicts, card checks, batches, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from partcheck.errors import InvalidImage, ModelError
from partcheck.messages import Prediction
from partcheck.thresholds import Thresholds
from services.predict import framing
from services.predict.backends import load_classifier
from services.predict.core import classify
from services.predict.onnx_backend import OnnxClassifier, card_path_for
from services.predict.preprocess import decode
from services.predict.settings import PredictSettings
from services.predict.train.variants import Variant, reframe
from tests.images import png_bomb, solid, truncated
from tests.services.predict import tiny_model
from tests.services.predict.odd_images import absurd_strip_offset_tiff, cielab_tiff
from tests.services.predict.tiny_model import textured

pytestmark = pytest.mark.unit


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return tiny_model.build(tmp_path)


def test_known_verdicts(tiny: Path) -> None:
    clf = OnnxClassifier(tiny)
    images = [textured(170), textured(80), textured(128)]
    bright, dark, middle = clf.predict(images)
    assert bright.label == "defect"
    assert bright.p_defect > 0.8
    assert dark.label == "ok"
    assert dark.p_defect < 0.2
    assert middle.label == "unclear"
    assert (middle.reason or "").startswith("below threshold")
    for p in (bright, dark, middle):
        assert (p.model_name, p.model_version) == ("tiny", "test-1")
        assert p.confidence == pytest.approx(max(p.p_defect, 1 - p.p_defect))
        assert {"preprocess", "quality", "inference"} <= set(p.timings_ms)
        assert p.ood_score == pytest.approx(1.0)
    # p_defect is sigmoid(logit gap / the card's temperature of 2), not of the raw gap.
    for p, data in zip((bright, dark, middle), images, strict=True):
        assert p.p_defect == pytest.approx(tiny_model.calibrated_p_defect(data), rel=1e-5)
        assert p.p_defect != pytest.approx(tiny_model.calibrated_p_defect(data, temperature=1.0), rel=1e-3)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_p_defect_is_scaled_by_the_cards_temperature(tiny: Path, temperature: float) -> None:
    card = card_path_for(tiny)
    data = json.loads(card.read_text())
    data["temperature"] = temperature
    card.write_text(json.dumps(data))
    image = textured(140)
    clf = OnnxClassifier(tiny)
    (p,) = clf.predict([image])
    expected = tiny_model.calibrated_p_defect(image, temperature)
    assert p.p_defect == pytest.approx(expected, rel=1e-5)
    assert clf.model_p_defect([image]) == [pytest.approx(expected, rel=1e-5)]


def test_classify_uses_the_protocol(tiny: Path) -> None:
    assert classify(textured(170), OnnxClassifier(tiny)).label == "defect"


def test_blank_and_badly_exposed_frames_get_no_verdict(tiny: Path) -> None:
    clf = OnnxClassifier(tiny)
    for data, words in [(solid(255), "over-exposed"), (solid(0), "under-exposed"), (solid(128), "blank")]:
        (p,) = clf.predict([data])
        assert p.label == "unclear"
        assert words in (p.reason or "")


@pytest.mark.parametrize("ood_value", [5.0001, 9.0])
def test_out_of_distribution_goes_to_unclear(tmp_path: Path, ood_value: float) -> None:
    # 5.0001 is above the card's 5.0 in float32 too (the model's ood output is float32).
    clf = OnnxClassifier(tiny_model.build(tmp_path, ood_value=ood_value, ood_threshold=5.0))
    (p,) = clf.predict([textured(170)])
    assert p.label == "unclear"
    assert (p.reason or "").startswith("out of distribution")
    assert p.ood_score == pytest.approx(ood_value)


@pytest.mark.parametrize("ood_value", [4.9999, 5.0])
def test_an_ood_score_at_the_cards_threshold_still_gets_a_verdict(tmp_path: Path, ood_value: float) -> None:
    clf = OnnxClassifier(tiny_model.build(tmp_path, ood_value=ood_value, ood_threshold=5.0))
    (p,) = clf.predict([textured(170)])
    assert p.label == "defect"
    assert p.reason is None
    assert p.ood_score == pytest.approx(ood_value)


def test_predict_many_isolates_bad_images(tiny: Path, sample_images: dict[str, list[Path]]) -> None:
    good = textured(170)
    jpeg = sample_images["ok"][0].read_bytes()
    out = OnnxClassifier(tiny).predict_many([good, b"", png_bomb(), truncated(jpeg), b"not an image", good])
    assert [type(o).__name__ for o in out] == [
        "Prediction",
        "InvalidImage",
        "InvalidImage",
        "InvalidImage",
        "InvalidImage",
        "Prediction",
    ]


def test_predict_raises_for_a_single_bad_image(tiny: Path) -> None:
    with pytest.raises(InvalidImage, match="0 bytes"):
        OnnxClassifier(tiny).predict([b""])


def test_predict_names_the_bad_members_of_a_batch(tiny: Path) -> None:
    with pytest.raises(InvalidImage, match="image 1"):
        OnnxClassifier(tiny).predict([textured(170), b""])


def test_threshold_override_beats_the_card(tiny: Path) -> None:
    strict = OnnxClassifier(tiny, thresholds=Thresholds(t_ok=0.5, t_defect=0.999999))
    (p,) = strict.predict([textured(170)])
    assert p.label == "unclear"
    assert p.thresholds.t_defect == 0.999999


def test_tampered_model_is_refused(tiny: Path) -> None:
    tiny.write_bytes(tiny.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="does not match its card"):
        OnnxClassifier(tiny)


def test_missing_model_and_missing_card_are_clear_errors(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        OnnxClassifier(tmp_path / "absent.onnx")
    card_path_for(tiny).unlink()
    with pytest.raises(ModelError, match=r"card .* not found"):
        OnnxClassifier(tiny)


def test_malformed_card_is_refused(tiny: Path) -> None:
    card = card_path_for(tiny)
    data = json.loads(card.read_text())
    del data["thresholds"]
    card.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="malformed"):
        OnnxClassifier(tiny)


def _with_framing(model: Path, section: object) -> None:
    card = card_path_for(model)
    data = json.loads(card.read_text())
    data["input"]["framing"] = section
    card.write_text(json.dumps(data))


def test_a_card_with_a_framing_has_the_located_part_classified(
    tiny: Path, sample_images: dict[str, list[Path]]
) -> None:
    fitted = framing.fit(decode(p.read_bytes(), 300).image for p in sample_images["ok"])
    _with_framing(tiny, fitted.to_dict())
    # A part shrunk into a bright frame and off centre: the centre square is mostly background.
    photo = sample_images["ok"][0].read_bytes()
    copy = reframe(photo, Variant("fill70_400_shift", 0.7, 400, (0.08, 0.0)), seed=0)
    clf = OnnxClassifier(tiny)
    assert clf.card.framing == fitted
    got = clf.predict_many([copy])[0]
    assert isinstance(got, Prediction)
    assert got.p_defect == pytest.approx(tiny_model.calibrated_p_defect(copy, framing=fitted), rel=1e-5)
    assert got.p_defect != pytest.approx(tiny_model.calibrated_p_defect(copy), rel=1e-3)
    assert clf.model_p_defect([copy]) == [pytest.approx(got.p_defect, rel=1e-9)]


@pytest.mark.parametrize(
    "section",
    [{"method": "hough-v0", "template": [0.0] * 76}, {"method": framing.METHOD}, [1, 2], "centre"],
)
def test_a_card_framing_this_code_cannot_apply_is_refused(tiny: Path, section: object) -> None:
    _with_framing(tiny, section)
    with pytest.raises(ModelError, match="malformed"):
        OnnxClassifier(tiny)


def test_load_classifier_reads_settings(tiny: Path) -> None:
    clf = load_classifier(PredictSettings(model_path=tiny, threshold=0.9))
    assert clf.name == "tiny"
    assert clf.thresholds == Thresholds.single(0.9)
    assert load_classifier(PredictSettings(model_path=tiny)).thresholds == Thresholds(t_ok=0.8, t_defect=0.8)


def test_load_classifier_rekognition_needs_arn_and_client() -> None:
    with pytest.raises(ModelError, match="ARN"):
        load_classifier(PredictSettings(backend="rekognition"))
    with pytest.raises(ModelError, match="client"):
        load_classifier(PredictSettings(backend="rekognition", rekognition_project_version_arn="arn:x"))


def test_predict_many_isolates_images_that_fail_in_any_way(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.predict import onnx_backend

    good, bug = textured(170), textured(171)
    real = onnx_backend.preprocess

    def preprocess_with_a_bug(data: bytes, size: int, framing: object = None) -> object:
        if data == bug:
            raise ZeroDivisionError("a bug in per-image work")
        return real(data, size, framing)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx_backend, "preprocess", preprocess_with_a_bug)
    out = OnnxClassifier(tiny).predict_many([good, cielab_tiff(), absurd_strip_offset_tiff(), bug, good])
    assert [type(o).__name__ for o in out] == [
        "Prediction",
        "InvalidImage",
        "InvalidImage",
        "InvalidImage",
        "Prediction",
    ]
    assert "unsupported colour mode 'LAB'" in str(out[1])
    assert "corrupt or truncated" in str(out[2])
    assert "ZeroDivisionError: a bug in per-image work" in str(out[3])


def test_checks_that_cannot_run_send_the_image_to_an_inspector_not_to_rejected(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.predict import quality

    # A fault of the service (a malformed card section, a bug) hits every decoded image alike: none of
    # them may land in rejected/, where no inspector looks.
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("scene")

    monkeypatch.setattr(quality, "check_scene", broken)
    out = OnnxClassifier(tiny).predict_many([textured(170), textured(80), b"not an image"])
    assert [type(o).__name__ for o in out] == ["Prediction", "Prediction", "InvalidImage"]
    for p in out[:2]:
        assert isinstance(p, Prediction)
        assert p.label == "unclear"
        assert p.reason == "checks could not run: KeyError: 'scene'"
