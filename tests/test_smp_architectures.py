"""Every architecture of the installed segmentation-models-pytorch as a baseline
(``smp-<arch>-<encoder>``): the model contract at odd sizes, smp's own parameter count, MACs
on ``meta``, names both ways, the decoder tokens each architecture takes, and the keys of the
unet and unetpp specs that runs have always been recorded under."""
import json

import pytest
import torch

import variants
from harness.cli import main
from harness.training.cost import count_macs, count_params
from variants.smp_baselines import architectures
from variants.spec import SMP_ALIASES

torch.set_num_threads(2)
ARCHS = sorted(architectures())  # the installed smp's, whatever its version holds


def encoder(arch: str) -> str:
    return "tu-vit_tiny_patch16_224" if arch == "dpt" else "resnet18"  # DPT needs a timm ViT


def smp_reference(arch: str, enc: str, **kw) -> torch.nn.Module:
    """The model as smp itself builds it (its own key: unetplusplus for unetpp)."""
    import segmentation_models_pytorch as smp

    key = {v: k for k, v in SMP_ALIASES.items()}.get(arch, arch)
    extra = {"dynamic_img_size": True} if arch == "dpt" else {}
    return smp.create_model(key, encoder_name=enc, encoder_weights=None, **kw, **extra)


@pytest.fixture(params=ARCHS, scope="module")
def built(request):
    arch = request.param
    spec = variants.parse(f"smp-{arch}-{encoder(arch)}-in2-k3")
    torch.manual_seed(0)
    return arch, spec, variants.build(spec)


def test_forward_backward_logits_at_odd_sizes(built):
    arch, spec, model = built
    model.train()
    for h, w in [(37, 45), (33, 70)]:
        y = model(torch.randn(2, 2, h, w))
        assert y.shape == (2, 3, h, w)
        model.zero_grad(set_to_none=True)
        y.float().pow(2).mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        y = model.eval()(10 * torch.randn(1, 2, 40, 40))
    assert (y < 0).any()  # logits, not probabilities


def test_parameters_are_smps_own_and_names_round_trip(built):
    arch, spec, model = built
    assert count_params(model) == sum(p.numel() for p in smp_reference(arch, spec.encoder, in_channels=2,
                                                                        classes=3).parameters())
    assert variants.parse(spec.name) == spec and variants.from_dict(spec.to_dict()) == spec
    macs = count_macs(spec, 64, 64)
    assert macs > 0 and count_macs(spec, 64, 64) == macs and count_macs(spec, 256, 256) > macs  # (PAN pads to 128)


@pytest.mark.parametrize("arch", ARCHS)
def test_profile_gives_smps_parameter_count_for_the_default_decoder(arch, capsys):
    assert main(["profile", f"smp-{arch}-{encoder(arch)}", "--in-channels", "3", "--classes", "1",
                 "--size", "64", "64", "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["params"] == sum(q.numel() for q in smp_reference(arch, encoder(arch)).parameters())
    assert p["macs"] > 0 and p["output_shape"] == [1, 1, 64, 64]


def test_decoder_tokens_set_each_architectures_own_arguments():
    base = count_params(variants.build("smp-fpn-resnet18"))
    fpn = variants.parse("smp-fpn-resnet18-dec64.32")
    assert fpn.decoder_kwargs() == {"decoder_pyramid_channels": 64, "decoder_segmentation_channels": 32}
    assert count_params(variants.build(fpn)) == sum(p.numel() for p in smp_reference(
        "fpn", "resnet18", decoder_pyramid_channels=64, decoder_segmentation_channels=32).parameters()) < base
    assert variants.parse("smp-deeplabv3plus-resnet18-dec64").decoder_kwargs() == {"decoder_channels": 64}
    assert variants.parse("smp-segformer-resnet18-dec64").decoder_kwargs() == {"decoder_segmentation_channels": 64}
    unet = variants.parse("smp-manet-resnet18-dec64.32.16")
    assert unet.decoder_kwargs() == {"decoder_channels": (64, 32, 16), "encoder_depth": 3}
    assert variants.parse("smp-fpn-resnet18").decoder_channels is None  # smp's own default decoder
    with pytest.raises(ValueError, match="smp linknet: takes no decoder token"):
        variants.parse("smp-linknet-resnet18-dec64")
    with pytest.raises(ValueError, match="smp fpn: dec takes at most 2"):
        variants.parse("smp-fpn-resnet18-dec64.32.16")


def test_unetpp_is_smps_unetplusplus_and_old_keys_stay():
    assert variants.parse("smp-unetplusplus-resnet18") == variants.parse("smp-unetpp-resnet18")
    assert variants.parse("smp-unetplusplus-resnet18").name == "smp-unetpp-resnet18"
    # the dict (and so the run key) of the specs runs were recorded under before
    assert variants.parse("smp-unet-resnet34").to_dict() == {
        "kind": "smp", "arch": "unet", "encoder": "resnet34", "decoder_channels": [256, 128, 64, 32, 16],
        "in_channels": 3, "classes": 1, "weights": None}


def test_an_architecture_or_encoder_smp_does_not_have_is_one_line(fails_cleanly):
    fails_cleanly("profile", "smp-notanarch-resnet18", names=["notanarch", "fpn"])
    fails_cleanly("profile", "smp-fpn-notanencoder", names=["notanencoder"])
    fails_cleanly("profile", "smp-dpt-resnet18", names=["dpt", "tu-"])
