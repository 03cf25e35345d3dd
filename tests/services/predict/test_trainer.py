"""The training loss (gamma 0 is plain weighted cross-entropy; focusing shifts weight to the misclassified)
and the fit on clean training photos."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import numpy as np  # noqa: E402

from services.predict.train.trainer import classification_loss, training_fit  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("weights", [None, (1.0, 3.0)])
def test_gamma_zero_is_cross_entropy(weights: tuple[float, float] | None) -> None:
    class_weight = torch.tensor(weights) if weights is not None else None
    logits = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1] * 8)
    expected = F.cross_entropy(logits, target, weight=class_weight)
    assert torch.allclose(classification_loss(logits, target, class_weight, 0.0), expected)


def test_focal_with_gamma_near_zero_matches_weighted_cross_entropy() -> None:
    # The focal branch's own arithmetic (not the shortcut) must reduce to the weighted mean at gamma -> 0.
    logits = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([1, 0, 1, 1] * 4)
    weight = torch.tensor([1.0, 3.0])
    expected = F.cross_entropy(logits, target, weight=weight)
    assert torch.allclose(classification_loss(logits, target, weight, 1e-9), expected, atol=1e-6)


def test_focal_loss_puts_the_gradient_on_the_misclassified_image() -> None:
    # One image right with p 0.98, one wrong with p 0.27: focusing raises the wrong one's share.
    target = torch.tensor([1, 1])

    def share_of_wrong(gamma: float) -> float:
        logits = torch.tensor([[-2.0, 2.0], [0.5, -0.5]], requires_grad=True)
        classification_loss(logits, target, None, gamma).backward()  # type: ignore[no-untyped-call]
        assert logits.grad is not None
        norms = logits.grad.norm(dim=1)
        return float(norms[1] / norms.sum())

    plain, focal = share_of_wrong(0.0), share_of_wrong(2.0)
    assert plain < focal
    assert focal > 0.99


def test_training_fit_counts_each_kind_of_miss() -> None:
    # Rows: ok right, ok called defect, defect right, defect called ok, defect called ok (tie goes to ok).
    logits = np.array([[2.0, -1.0], [0.1, 0.4], [-3.0, 3.0], [1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1, 1])
    fit = training_fit(logits, labels)
    assert fit == {"n": 5, "accuracy_argmax": 0.4, "defects_called_ok": 2, "ok_called_defect": 1}
