"""MAC counting: the headline count against a hand computation, thop as a cross-check."""
import pytest
import torch

import variants
from harness.training.cost import count_macs, count_macs_thop, count_params, profile
from variants import ArchSpec


def conv_macs(h, w, cin, cout, k):
    return h * w * cin * cout * k * k


def test_flop_counter_equals_hand_count_tiny_unet():
    # depth 1, width 2, 1 -> 1 channel, 8x6 input, transposed up, padded convs
    spec = ArchSpec(width=2, depth=1, in_channels=1, classes=1)
    h, w = 8, 6
    expected = (
        conv_macs(h, w, 1, 2, 3) + conv_macs(h, w, 2, 2, 3)                  # stage 0
        + conv_macs(h // 2, w // 2, 2, 4, 3) + conv_macs(h // 2, w // 2, 4, 4, 3)  # bottleneck
        + (h // 2) * (w // 2) * 4 * 2 * 2 * 2                                # 2x2 transposed conv 4->2
        + conv_macs(h, w, 4, 2, 3) + conv_macs(h, w, 2, 2, 3)                # decoder block
        + conv_macs(h, w, 2, 1, 1)                                           # 1x1 head
    )
    assert count_macs(spec, h, w) == expected


def test_flop_counter_equals_hand_count_crop_bilinear():
    # valid convs shrink the maps; bilinear interpolation costs no MACs by convention
    spec = ArchSpec(width=2, depth=1, in_channels=1, classes=1, skip="crop", up="bilinear")
    n = variants.min_input_size(spec, 2)
    s0a, s0b = n - 2, n - 4
    b_a, b_b = s0b // 2 - 2, s0b // 2 - 4
    u = 2 * b_b
    expected = (conv_macs(s0a, s0a, 1, 2, 3) + conv_macs(s0b, s0b, 2, 2, 3)
                + conv_macs(b_a, b_a, 2, 4, 3) + conv_macs(b_b, b_b, 4, 4, 3)
                + conv_macs(u - 2, u - 2, 2 + 4, 2, 3) + conv_macs(u - 4, u - 4, 2, 2, 3)
                + conv_macs(u - 4, u - 4, 2, 1, 1))
    assert count_macs(spec, n, n) == expected


@pytest.mark.parametrize("preset", ["seed000", "seed001", "seed001-transpose", "seed002",
                                    "seed003", "seed003-ds", "seed004", "smp-unet-resnet34"])
def test_thop_agrees_within_two_percent(preset):
    spec = variants.PRESETS[preset]
    model = variants.build(spec)
    ours = count_macs(spec, 64, 64)
    theirs = count_macs_thop(model, spec.in_channels, 64, 64)
    assert abs(theirs / ours - 1) < 0.02
    assert not any("total_ops" in k for k in model.state_dict())  # thop ran on a copy


def test_thop_transposed_conv_is_corrected():
    m = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 2, 2, stride=2))
    assert count_macs_thop(m, 4, 5, 5) == 5 * 5 * 4 * 2 * 2 * 2


def test_profile_counts_are_integers_and_shapes_right():
    spec = ArchSpec(width=4, depth=2, skip="crop")
    p = profile(spec, 64, 64)
    assert isinstance(p["params"], int) and isinstance(p["macs"], int) and isinstance(p["macs_thop"], int)
    assert p["params"] == count_params(variants.build(spec))
    m = variants.margin(spec)
    assert p["input_shape"] == [1, 3, 64, 64]
    assert p["output_shape"] == [1, 1, 64 - 2 * m, 64 - 2 * m]


def test_profile_without_thop_says_why_and_keeps_the_headline(monkeypatch, capsys):
    """On Python 3.12 thop's `from distutils...` fails: the headline stands alone."""
    import harness.training.cost
    from harness.cli import main

    def broken(*a, **kw):
        raise ModuleNotFoundError("No module named 'distutils'")

    monkeypatch.setattr(harness.training.cost, "count_macs_thop", broken)
    p = profile("unet-w4-d2", 32, 32)
    assert p["macs_thop"] is None and "distutils" in p["thop_missing"] and p["macs"] == count_macs("unet-w4-d2", 32, 32)
    assert main(["profile", "unet-w4-d2", "--size", "32", "32"]) == 0
    assert "MACs (thop)  n/a: No module named 'distutils'" in capsys.readouterr().out
