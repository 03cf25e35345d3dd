"""Decision thresholds on a 0-1 scale: the original single threshold and a two-sided band."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["ok", "defect", "unclear"]
ORIGINAL_THRESHOLD = 0.8


class Thresholds(BaseModel):
    """`ok` only when p_ok >= t_ok, `defect` only when p_defect >= t_defect, otherwise `unclear`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Both at least 0.5, so at most one side of the band can hold; 0-1 scale, never Rekognition's 0-100.
    t_ok: float = Field(ge=0.5, le=1.0)
    t_defect: float = Field(ge=0.5, le=1.0)

    @classmethod
    def single(cls, threshold: float = ORIGINAL_THRESHOLD) -> Self:
        """The original design: the top label's confidence below `threshold` means unclear."""
        return cls(t_ok=threshold, t_defect=threshold)

    def decide(self, p_defect: float) -> Verdict:
        """Apply the band to a defect probability."""
        if not 0.0 <= p_defect <= 1.0:
            raise ValueError(f"p_defect must be within 0-1, got {p_defect}")
        p_ok = 1.0 - p_defect
        ok = p_ok >= self.t_ok
        defect = p_defect >= self.t_defect
        if ok and not defect:
            return "ok"
        if defect and not ok:
            return "defect"
        return "unclear"
