"""A classifier with a known verdict, for tests of routing (the real model has its own tests)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

from PIL import Image, UnidentifiedImageError

from partcheck.errors import InvalidImage
from partcheck.messages import Prediction, PredictionMessage
from partcheck.storage import ObjectStore
from partcheck.thresholds import Thresholds


class FakeClassifier:
    """Answers from a table of sha256 -> p_defect; unknown images get 0.5 (unclear). Decodes for real."""

    name = "fake"
    version = "0"

    def __init__(
        self, p_defect_by_sha: dict[str, float] | None = None, thresholds: Thresholds | None = None
    ) -> None:
        self.table = dict(p_defect_by_sha or {})
        self.thresholds = thresholds or Thresholds.single(0.8)
        self.calls = 0

    def learn(self, data: bytes, p_defect: float) -> None:
        """Fix the answer for these bytes."""
        self.table[hashlib.sha256(data).hexdigest()] = p_defect

    def predict_many(self, images: Sequence[bytes]) -> list[Prediction | InvalidImage]:
        """Per-image results, as the real backends give them."""
        out: list[Prediction | InvalidImage] = []
        for data in images:
            try:
                out.extend(self.predict([data]))
            except InvalidImage as exc:
                out.append(exc)
        return out

    def predict(self, images: Sequence[bytes]) -> list[Prediction]:
        """Decode each image (so corrupt bytes fail as with the real model) and look up its answer."""
        out = []
        for data in images:
            self.calls += 1
            try:
                with Image.open(io.BytesIO(data)) as im:
                    im.load()
            except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
                raise InvalidImage(str(exc)) from exc
            p = self.table.get(hashlib.sha256(data).hexdigest(), 0.5)
            label = self.thresholds.decide(p)
            out.append(
                Prediction(
                    label=label,
                    confidence=max(p, 1 - p),
                    p_defect=p,
                    model_name=self.name,
                    model_version=self.version,
                    thresholds=self.thresholds,
                    reason="below threshold" if label == "unclear" else None,
                )
            )
        return out


def stored_prediction(
    store: ObjectStore, bucket: str, key: str, image: bytes, p_defect: float
) -> PredictionMessage:
    """Upload `image` to bucket/key and return the message predict would send for it (p_defect as given)."""
    fake = FakeClassifier()
    fake.learn(image, p_defect)
    return PredictionMessage(
        outcome="classified",
        bucket=bucket,
        key=key,
        etag=store.put(bucket, key, image),
        prediction=fake.predict([image])[0],
        predicted_at="2026-11-25T00:00:00+00:00",
    )
