"""Pure core of the predict service: bytes in, Prediction out; no AWS, no environment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from partcheck.errors import InvalidImage, PartcheckError
from partcheck.messages import Prediction
from partcheck.thresholds import Thresholds

# The reasons of an unclear verdict that still carry the model's output. Every other reason is a refusal
# by the quality or scene checks, whose p_defect is a placeholder; evaluation and the post-export checks
# tell the two apart by these prefixes, so the backends must build their reasons from them.
BELOW_BAND = "below threshold"
OUT_OF_DISTRIBUTION = "out of distribution"


def refused_by_checks(reason: str) -> bool:
    """True for a quality or scene refusal: its Prediction's p_defect is a placeholder 0.5."""
    return not reason.startswith((BELOW_BAND, OUT_OF_DISTRIBUTION))


class Classifier(Protocol):
    """A model backend. Raises InvalidImage for bytes it cannot accept; never guesses a verdict."""

    name: str
    version: str
    thresholds: Thresholds

    def predict(self, images: Sequence[bytes]) -> list[Prediction]:
        """Classify a batch of encoded images, one Prediction each, in order."""
        ...

    def predict_many(self, images: Sequence[bytes]) -> Sequence[Prediction | PartcheckError]:
        """One result per image, in order: a bad image never fails the others.

        A Prediction; InvalidImage when the image is at fault (never retried); any other PartcheckError
        when this image was not classified this time (a throttled or unavailable remote model), so that
        only it is retried and the images already classified are not paid for again.
        """
        ...


def classify(image: bytes, classifier: Classifier) -> Prediction:
    """Classify one encoded image."""
    return classifier.predict([image])[0]


def all_or_raise(results: Sequence[Prediction | PartcheckError]) -> list[Prediction]:
    """`predict_many`'s results as `predict` returns them: InvalidImage naming every bad member, if any."""
    for r in results:
        if isinstance(r, PartcheckError) and not isinstance(r, InvalidImage):
            raise r  # not classified this time: the caller retries, nothing is the images' fault
    bad = [(i, r) for i, r in enumerate(results) if isinstance(r, InvalidImage)]
    if bad:
        if len(results) == 1:
            raise bad[0][1]
        raise InvalidImage("; ".join(f"image {i}: {exc}" for i, exc in bad))
    return [r for r in results if isinstance(r, Prediction)]
