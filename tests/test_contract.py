"""One contract for every architecture the harness compares, in the spirit of smp's
``BaseModelTester``: family topologies, smp baselines and pruned deep-supervision forms
all pass the same checks (forward and backward, output shape for odd sizes, logits not
probabilities, spec round trip, parameters and MACs stable)."""
import pytest
import torch

import variants
from harness.training.cost import count_macs, count_params

torch.set_num_threads(2)

# name -> (parameters, MACs of one side x side image). Recorded from this code; the first
# was checked by hand: encoder 18,720 + decoder 9,072 + 2,296 + 588 + head 15 = 30,691.
CONTRACT = {
    "unet-w4-d3-in2-k3": (30_691, 9_289_728),
    "unet-vgg16-w4-d3-in2-k3": (42_355, 10_469_376),
    "unet-relu6-bilinear-nobn-w4-d3-in2-k3": (30_647, 10_665_984),
    "unet-bilinear-matched-w4-d3-in2-k3": (13_551, 6_242_304),
    "unet-crop-w4-d2-in2-k3": (7_603, 4_805_920),
    "unetpp-w4-d3-in2-k3": (35_171, 17_350_656),
    "unetpp-ds-w4-d3-in2-k3": (35_201, 17_448_960),
    "unetpp-ds-w4-d3-in2-k3-L1": (1_755, 3_719_168),
    "unetpp-ds-crop-bilinear-w4-d2-in2-k3-L2": (8_415, 7_968_864),
    "smp-unet-resnet18-dec16.8.8.4.4-in2-k3": (11_306_271, 153_239_552),
    "smp-unetpp-resnet18-dec16.8.8.4.4-in2-k3": (12_697_375, 738_934_784),
}
ODD = [(37, 45), (33, 64)]  # pad mode: any size; crop mode: the nearest valid size


def side(spec, n: int) -> int:
    """A valid input size near ``n``: any size in pad mode, the next valid one in crop mode."""
    if getattr(spec, "skip", "pad") == "crop":
        return variants.min_input_size(spec, variants.output_size(spec, variants.min_input_size(spec, n)))
    return n


def mac_side(spec) -> int:
    return variants.min_input_size(spec, 40) if getattr(spec, "skip", "pad") == "crop" else 64


@pytest.fixture(params=list(CONTRACT), scope="module")
def arch(request):
    spec = variants.parse(request.param)
    torch.manual_seed(0)
    return request.param, spec, variants.build(spec)


def outputs(y):
    return y if isinstance(y, list) else [y]


def test_forward_backward_and_shapes_at_odd_sizes(arch):
    _, spec, model = arch
    model.train()
    for h, w in ODD:
        h, w = side(spec, h), side(spec, w)
        x = torch.randn(2, spec.in_channels, h, w)
        ys = outputs(model(x))
        oh = variants.output_size(spec, h) if isinstance(spec, variants.ArchSpec) else h
        ow = variants.output_size(spec, w) if isinstance(spec, variants.ArchSpec) else w
        assert all(y.shape == (2, spec.classes, oh, ow) for y in ys)
        # deep supervision trains every head; the accurate form returns them all
        assert len(ys) == (spec.depth if spec.deep_supervision and spec.form == "mean" else 1)
        model.zero_grad(set_to_none=True)
        sum(y.float().pow(2).mean() for y in ys).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(1, spec.in_channels, side(spec, 40), side(spec, 40)))
    assert isinstance(y, torch.Tensor)  # one tensor in eval mode, whatever the form


def test_returns_logits_not_probabilities(arch):
    _, spec, model = arch
    with torch.no_grad():
        y = model.eval()(10 * torch.randn(2, spec.in_channels, side(spec, 40), side(spec, 40)))
    assert (y < 0).any()  # probabilities (sigmoid, softmax) are never negative
    assert not torch.allclose(y.sum(dim=1), torch.ones(()))  # not a softmax over classes


def test_spec_round_trips(arch):
    _, spec, _ = arch
    assert variants.parse(spec.name) == spec  # the full name of a short one
    assert variants.parse(spec.name).name == spec.name
    assert variants.from_dict(spec.to_dict()) == spec


def test_parameters_and_macs_are_stable(arch):
    name, spec, model = arch
    params, macs = CONTRACT[name]
    assert count_params(model) == params == count_params(variants.build(spec))
    assert count_macs(spec, mac_side(spec), mac_side(spec)) == macs


def test_pruned_forms_share_the_full_networks_values():
    """A pruned form is the accurate network's subset, parameter for parameter."""
    full = variants.build("unetpp-ds-w4-d3-in2-k3")
    for k in (1, 2, 3):
        pruned = full.pruned(k)
        assert pruned.spec.form == f"L{k}"
        own = full.state_dict()
        for key, value in pruned.state_dict().items():
            assert torch.equal(value, own[key])
