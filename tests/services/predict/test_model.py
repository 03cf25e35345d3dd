"""The network's layout (widening convs with and without `pool_first_from`) and its fold for export."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
from torch import nn  # noqa: E402

from services.predict.train.model import PartNet, WithLocalContrast, fold_for_export, max_filter  # noqa: E402

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


def _trained_like(net: PartNet) -> PartNet:
    """Give every BatchNorm non-trivial statistics and affine terms, as training would."""
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return net.eval()


def test_folding_batchnorm_keeps_the_outputs_and_removes_every_batchnorm() -> None:
    net = _trained_like(PartNet(WIDTHS, 1, True, "avgmax", 3, 5))
    folded = fold_for_export(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # a copy: the original keeps its BNs
    x = torch.rand(3, 1, 300, 300, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = net(x), folded(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4)


def test_fp16_folding_leaves_only_float16_values_in_the_conv_weights() -> None:
    net = _trained_like(PartNet(WIDTHS, 1, True, "avgmax", 3, 5))
    folded = fold_for_export(net, fp16_weights=True)
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert convs
    for conv in convs:
        assert conv.weight.dtype == torch.float32
        assert torch.equal(conv.weight, conv.weight.half().float())
    # Rounding moved them: the weights differ from the plain fold's.
    plain = [m for m in fold_for_export(net).modules() if isinstance(m, nn.Conv2d)]
    assert any(not torch.equal(a.weight, b.weight) for a, b in zip(convs, plain, strict=True))


def test_the_aux_head_reads_stage_one_and_leaves_the_logits_alone() -> None:
    net = _trained_like(PartNet(WIDTHS, 1, True, "avgmax", 3, 5, aux_stage=1))
    x = torch.rand(2, 1, 300, 300, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, aux = net.forward_with_aux(x)
        assert torch.equal(logits, net(x))
    assert aux.shape == (2, 1, 25, 25)  # the probes' 25 px map: stem to 50 px, stage 1 to 25 px
    # Exported features and logits do not depend on the head: the same weights without it agree.
    plain = PartNet(WIDTHS, 1, True, "avgmax", 3, 5)
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("aux.")})
    plain.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), logits)


def test_aux_head_errors() -> None:
    with pytest.raises(ValueError, match="no auxiliary head"):
        PartNet(WIDTHS).forward_with_aux(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="aux_stage 7"):
        PartNet(WIDTHS, aux_stage=7)


def test_local_contrast_marks_a_small_dark_spot_and_not_the_larger_shapes() -> None:
    x = torch.full((1, 1, 40, 40), 0.8)
    x[..., :, 25:] = 0.3  # a dark region wider than the window: a vane, not a pit
    x[..., 10:13, 10:13] = 0.8 * 0.85  # a 3 px pinhole, 15 % darker than the metal
    out = WithLocalContrast(window=5, gain=5.0)(x)
    assert out.shape == (1, 2, 40, 40)
    assert torch.allclose(out[:, :1], PartNet().body[0](x))  # the first channel is the standardised photo
    relative = out[0, 1]
    assert float(relative[11, 11]) == pytest.approx((0.68 - 0.8) / 0.82 * 5, rel=1e-4)
    spot = torch.zeros(40, 40, dtype=torch.bool)
    spot[10:13, 10:13] = True
    assert float(relative[~spot].abs().max()) < 1e-5  # flat metal, the dark region and its edge: nothing


def test_local_contrast_feeds_a_two_channel_stem() -> None:
    net = PartNet((16, 24, 48, 96, 128), 1, True, "avgmax", 3, 5, local_contrast=True).eval()
    stem = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert stem.in_channels == 2
    assert net(torch.rand(2, 1, 300, 300)).shape == (2, 2)
    folded = fold_for_export(net)
    x = torch.rand(2, 1, 300, 300)
    assert torch.allclose(folded(x), net(x), atol=1e-4)


@pytest.mark.parametrize("k", [3, 5])
def test_max_filter_equals_a_stride_one_max_pool(k: int) -> None:
    x = torch.rand(3, 1, 17, 23, generator=torch.Generator().manual_seed(k))
    assert torch.equal(max_filter(x, k), F.max_pool2d(x, k, 1, k // 2))
