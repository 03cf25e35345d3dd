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


@pytest.mark.parametrize("value", [80, 1.5, 0.3, -1])
def test_thresholds_must_be_on_a_0_1_scale_and_at_least_half(value):
    with pytest.raises(ValidationError):
        Thresholds(t_ok=value, t_defect=0.8)


def test_p_defect_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="0-1"):
        Thresholds.single().decide(80.0)
