import pytest
from pydantic import ValidationError

from partcheck.thresholds import Thresholds

pytestmark = pytest.mark.unit


def test_single_threshold_is_the_originals_rule():
    t = Thresholds.single(0.8)
    assert t.decide(0.95) == "defect"
    assert t.decide(0.05) == "ok"
    assert t.decide(0.79) == "unclear"
    assert t.decide(0.21) == "unclear"
    assert t.decide(0.8) == "defect"


def test_band_is_two_sided():
    t = Thresholds(t_ok=0.999, t_defect=0.6)
    assert t.decide(0.6) == "defect"
    assert t.decide(0.002) == "unclear"  # p_ok 0.998 is not enough for ok
    assert t.decide(0.0005) == "ok"


def test_tie_at_half_is_unclear():
    assert Thresholds.single(0.5).decide(0.5) == "unclear"


@pytest.mark.parametrize("side", ["t_ok", "t_defect"])
@pytest.mark.parametrize("value", [80, 1.5, 1.0001, 0.4999, 0.3, -1])
def test_thresholds_must_be_on_a_0_1_scale_and_at_least_half(side, value):
    with pytest.raises(ValidationError):
        Thresholds(**{"t_ok": 0.8, "t_defect": 0.8, side: value})


@pytest.mark.parametrize("side", ["t_ok", "t_defect"])
@pytest.mark.parametrize("value", [0.5, 1.0])
def test_thresholds_at_the_ends_of_their_range_are_accepted(side, value):
    t = Thresholds(**{"t_ok": 0.8, "t_defect": 0.8, side: value})
    assert getattr(t, side) == value


def test_certain_probabilities_get_a_verdict():
    # The ONNX backend clips the logit gap to +-60, so p_defect 0.0 and 1.0 really arrive here.
    for t in (Thresholds.single(0.8), Thresholds(t_ok=1.0, t_defect=1.0)):
        assert t.decide(0.0) == "ok"
        assert t.decide(1.0) == "defect"


@pytest.mark.parametrize("p_defect", [80.0, 1.0001, -0.0001, float("nan")])
def test_p_defect_out_of_range_is_an_error(p_defect):
    with pytest.raises(ValueError, match="0-1"):
        Thresholds.single().decide(p_defect)
