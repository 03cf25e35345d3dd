"""The network's layout: where each stage's widening conv runs, with and without `pool_first_from`."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from services.predict.train.model import PartNet  # noqa: E402

pytestmark = pytest.mark.unit

WIDTHS = (16, 24, 48, 96, 128)


def _conv_inputs(net: PartNet, side: int) -> list[tuple[int, int, int]]:
    """(in channels, out channels, input side) of every conv, in order, for one side x side photo."""
    seen: list[tuple[int, int, int]] = []

    def record(m: nn.Conv2d, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        seen.append((m.in_channels, m.out_channels, args[0].shape[-1]))

    hooks = [m.register_forward_hook(record) for m in net.modules() if isinstance(m, nn.Conv2d)]
    net.eval()
    with torch.no_grad():
        logits = net(torch.rand(1, 1, side, side))
    for h in hooks:
        h.remove()
    assert logits.shape == (1, 2)
    return seen


def test_pool_first_runs_each_widening_conv_on_a_quarter_of_the_positions() -> None:
    after = _conv_inputs(PartNet(WIDTHS, 1, True, "avgmax", 3, 5), 300)
    first = _conv_inputs(PartNet(WIDTHS, 1, True, "avgmax", 3, 5, pool_first_from=1), 300)
    assert [c[:2] for c in after] == [c[:2] for c in first]
    widening = [i for i, (c_in, c_out, _) in enumerate(after) if c_in != c_out and c_in != 1]
    assert len(widening) == 4
    for i, (a, f) in enumerate(zip(after, first, strict=True)):
        # Same side for the stem and the second convs; half the side (a quarter of the positions) where
        # the channels grow.
        assert f[2] == (a[2] // 2 if i in widening else a[2])
    assert first[0][2] == 300
    assert first[1][2] == 25


def test_pool_first_keeps_the_parameters_and_the_final_map() -> None:
    after = PartNet(WIDTHS, 1, True, "avgmax", 3, 5)
    first = PartNet(WIDTHS, 1, True, "avgmax", 3, 5, pool_first_from=1)
    assert sum(p.numel() for p in after.parameters()) == sum(p.numel() for p in first.parameters())
    x = torch.rand(2, 1, 300, 300)
    assert after.body(x).shape == first.body(x).shape == (2, 128, 3, 3)


def test_pool_first_needs_pooling_to_change_anything() -> None:
    strided = _conv_inputs(PartNet(WIDTHS, 1, False, "avg", 3, 5), 300)
    assert strided == _conv_inputs(PartNet(WIDTHS, 1, False, "avg", 3, 5, pool_first_from=1), 300)


def test_pool_first_from_a_later_stage_keeps_the_earlier_stages_at_full_size() -> None:
    after = _conv_inputs(PartNet(WIDTHS, 1, True, "avgmax", 3, 5), 300)
    from2 = _conv_inputs(PartNet(WIDTHS, 1, True, "avgmax", 3, 5, pool_first_from=2), 300)
    # Stem, stage 1's two convs as before; stage 2's widening conv on half the side.
    assert from2[:3] == after[:3]
    assert from2[3][2] == after[3][2] // 2
