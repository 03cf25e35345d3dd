"""The training loss (gamma 0 is plain weighted cross-entropy; focusing shifts weight to the misclassified)
and the fit on clean training photos."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from services.predict.train.config import TrainConfig  # noqa: E402
from services.predict.train.trainer import (  # noqa: E402
    _batches,
    classification_loss,
    consistency_loss,
    pit_map_loss,
    train,
    training_fit,
)

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


def test_pit_map_loss_marks_the_pit_cell_and_ignores_unsupervised_photos() -> None:
    masks = torch.zeros(3, 1, 12, 12)
    masks[0, 0, 4:7, 8:11] = 1.0  # a pit in the cell (1, 2) of a 3x3 map of 4 px cells
    masks[2, 0, 0:3, 0:3] = 1.0  # a real defect's photo would have no mask; this one must not count
    supervised = torch.tensor([True, True, False])
    right = torch.full((3, 1, 3, 3), -8.0)
    right[0, 0, 1, 2] = 8.0
    wrong = right.clone()
    wrong[0, 0, 1, 2] = -8.0  # the pit missed
    low, high = pit_map_loss(right, masks, supervised), pit_map_loss(wrong, masks, supervised)
    assert float(low) < 1e-2
    # One missed pit costs as much as every clean cell of a photo wrong: weighted by the 9 cells.
    assert float(high) == pytest.approx(9 * 8.0 / 18, rel=1e-2)
    unsupervised_wrong = right.clone()
    unsupervised_wrong[2] = 8.0
    assert torch.equal(pit_map_loss(unsupervised_wrong, masks, supervised), low)
    # A batch of real defects only (no ok photo, so no copy): zero, not the NaN of an empty mean.
    none = pit_map_loss(unsupervised_wrong, masks, torch.zeros(3, dtype=torch.bool))
    assert float(none) == 0.0


def test_the_pit_map_needs_pitted_copies(tmp_path: Path) -> None:
    cfg = TrainConfig(data_dir=tmp_path, out_dir=tmp_path, pit_aux_weight=1.0)
    with pytest.raises(ValueError, match="synth_pit_pairs"):
        train(cfg)


def test_pinhole_stamps_need_pits_to_replace_and_300_px_photos(tmp_path: Path) -> None:
    marks = tmp_path / "marks.json"
    with pytest.raises(ValueError, match="--synth-pit-pairs or --synth-pinhole-p"):
        train(TrainConfig(data_dir=tmp_path, out_dir=tmp_path, synth_pit_stamps=marks))
    cfg = TrainConfig(data_dir=tmp_path, out_dir=tmp_path, synth_pit_stamps=marks, synth_pit_pairs=2)
    with pytest.raises(ValueError, match="--size 300"):
        train(dataclasses.replace(cfg, size=96))


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_sample_weights_of_the_class_weights_give_the_class_weighted_loss(gamma: float) -> None:
    logits = torch.randn(16, 2, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([0, 1, 1, 0] * 4)
    class_weight = torch.tensor([1.0, 3.0])
    expected = classification_loss(logits, target, class_weight, gamma)
    got = classification_loss(logits, target, None, gamma, class_weight[target])
    assert torch.allclose(got, expected, atol=1e-6)
    # Down-weighting one photo moves the loss toward the others'.
    lighter = class_weight[target].clone()
    lighter[1] = 1.0
    assert not torch.allclose(classification_loss(logits, target, None, gamma, lighter), expected)


def test_oversampled_indices_join_the_shuffle_and_no_extra_draws_the_same_order() -> None:
    plain = _batches(10, 4, torch.Generator().manual_seed(3))
    assert [b.tolist() for b in plain] == [
        b.tolist() for b in _batches(10, 4, torch.Generator().manual_seed(3), None)
    ]
    assert (
        torch.cat(plain).tolist() == torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist()
    )
    extra = torch.tensor([2, 2, 7])
    batches = _batches(10, 4, torch.Generator().manual_seed(3), extra)
    assert [len(b) for b in batches] == [4, 4, 4, 1]
    drawn = torch.cat(batches).tolist()
    assert sorted(drawn) == sorted([*range(10), 2, 2, 7])


def test_oversampling_needs_at_least_one_draw(tmp_path: Path) -> None:
    cfg = TrainConfig(
        data_dir=tmp_path, out_dir=tmp_path, oversample_marked=tmp_path / "m.json", oversample_times=0
    )
    with pytest.raises(ValueError, match="at least 1"):
        train(cfg)


def test_consistency_loss_is_the_jensen_shannon_divergence_of_the_two_views() -> None:
    import math

    even = torch.tensor([[0.0, 0.0]])
    sure = torch.tensor([[0.0, 40.0]])  # p = (0, 1) to float precision
    assert float(consistency_loss(even, even)) == 0.0
    # Between (1/2, 1/2) and (0, 1) the mixture is (1/4, 3/4): KL to it of each, averaged.
    kl_even = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    kl_sure = math.log(1 / 0.75)
    assert float(consistency_loss(even, sure)) == pytest.approx((kl_even + kl_sure) / 2, rel=1e-5)
    assert float(consistency_loss(sure, even)) == pytest.approx(float(consistency_loss(even, sure)))
    # Averaged over the batch: a second, agreeing pair halves it.
    pair = consistency_loss(torch.cat([even, even]), torch.cat([sure, even]))
    assert float(pair) == pytest.approx(float(consistency_loss(even, sure)) / 2, rel=1e-5)


def test_two_views_and_pitted_copies_do_not_combine(tmp_path: Path) -> None:
    cfg = TrainConfig(data_dir=tmp_path, out_dir=tmp_path, consistency_weight=12.0, synth_pit_pairs=2)
    with pytest.raises(ValueError, match="two views per photo"):
        train(cfg)


def test_a_config_cannot_change_after_its_split_is_read(tmp_path: Path) -> None:
    cfg = TrainConfig(data_dir=tmp_path, out_dir=tmp_path, val_fold=1)
    assert cfg.split.fold == 1
    # The split is cached: a field changed afterwards would have left the run on the old split.
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.val_fold = 2  # type: ignore[misc]
    assert dataclasses.replace(cfg, val_fold=2).split.fold == 2
