"""The variant family: specs, every axis combination, sizes, seed presets, UNet++ heads."""
import itertools

import pytest
import torch
from seed_reference import reference

import variants
from variants import ArchSpec, SmpSpec, build, min_input_size, output_size

torch.set_num_threads(2)

SEEDS = ["seed000", "seed001", "seed001-transpose", "seed002", "seed003", "seed003-ds", "seed004"]


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def all_combinations():
    """Every point of the grid of categorical axes x deep supervision x form."""
    names = list(variants.AXES)
    for values in itertools.product(*variants.AXES.values()):
        for ds, form in [(False, "mean"), (True, "mean"), (True, "L1"), (False, "L2")]:
            yield dict(zip(names, values), deep_supervision=ds, form=form)


def try_spec(fields, **small):
    try:
        return ArchSpec(**fields, **small)
    except ValueError as e:
        return e


def input_side(spec):
    return min_input_size(spec, 4) if spec.skip == "crop" else 20


@pytest.mark.parametrize("fields", list(all_combinations()), ids=lambda f: "-".join(str(v) for v in f.values()))
def test_every_combination_builds_or_names_the_axis(fields):
    spec = try_spec(fields, width=4, depth=2, in_channels=2, classes=3)
    if isinstance(spec, ValueError):
        axis = str(spec).split(":")[0]
        assert axis in fields, f"error does not name an axis: {spec}"
        return
    model = build(spec).train()
    n = input_side(spec)
    x = torch.randn(2, 2, n, n)
    y = model(x)
    ys = y if isinstance(y, list) else [y]
    assert isinstance(y, list) == (spec.deep_supervision and spec.form == "mean")
    o = output_size(spec, n)
    for t in ys:
        assert t.shape == (2, 3, o, o)
    sum(t.float().pow(2).mean() for t in ys).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3, o, o)


def test_grid_has_many_valid_members():
    valid = [f for f in all_combinations() if not isinstance(try_spec(f), ValueError)]
    assert len(valid) >= 64


@pytest.mark.parametrize("name", list(variants.PRESETS))
def test_every_preset_runs_forward_and_backward_small(name):
    spec = variants.PRESETS[name]
    if isinstance(spec, ArchSpec):
        spec = spec.replace(width=4)
    else:
        spec = spec.replace(encoder="resnet18", decoder_channels=(16, 8, 8, 4, 4))
    model = build(spec).train()
    x = torch.randn(2, spec.in_channels, 40, 36)
    y = model(x)
    ys = y if isinstance(y, list) else [y]
    assert all(t.shape == (2, spec.classes, 40, 36) for t in ys)
    sum(t.mean() for t in ys).backward()


@pytest.mark.parametrize("topology", ["unet", "unetpp"])
@pytest.mark.parametrize("encoder", ["plain", "vgg16"])
@pytest.mark.parametrize("up", ["transpose", "bilinear"])
@pytest.mark.parametrize("hw", [(33, 47), (101, 64), (17, 16)])
def test_pad_mode_keeps_odd_and_non_square_sizes(topology, encoder, up, hw):
    spec = ArchSpec(topology=topology, encoder=encoder, up=up, width=4, depth=3)
    with torch.no_grad():
        y = build(spec).eval()(torch.randn(1, 3, *hw))
    assert y.shape[-2:] == hw


def test_pad_mode_smp_any_size():
    spec = SmpSpec(encoder="resnet18", decoder_channels=(8, 8, 8, 8, 8))
    with torch.no_grad():
        assert build(spec).eval()(torch.randn(1, 3, 33, 47)).shape == (1, 1, 33, 47)


@pytest.mark.parametrize("topology,encoder,depth", [("unet", "plain", 2), ("unet", "plain", 4),
                                                    ("unet", "vgg16", 3), ("unetpp", "plain", 2),
                                                    ("unetpp", "vgg16", 3)])
def test_crop_mode_sizes_match_helpers(topology, encoder, depth):
    spec = ArchSpec(topology=topology, encoder=encoder, depth=depth, skip="crop", width=2)
    model = build(spec).eval()
    for out in (1, 9, 30):
        n = min_input_size(spec, out)
        assert output_size(spec, n) >= out
        assert n == min(m for m in range(1, n + 1) if _valid(spec, m) and output_size(spec, m) >= out)
        with torch.no_grad():
            y = model(torch.randn(1, 3, n, n + 2 ** depth))
        assert y.shape[-2:] == (output_size(spec, n), output_size(spec, n + 2 ** depth))
    m = variants.margin(spec)
    n = min_input_size(spec, 50)
    assert output_size(spec, n) == n - 2 * m


def _valid(spec, n):
    try:
        output_size(spec, n)
        return True
    except ValueError:
        return False


def test_crop_mode_matches_the_paper():
    spec = ArchSpec(skip="crop", in_channels=1, classes=2)
    assert output_size(spec, 572) == 388  # Ronneberger et al. 2015, Fig. 1
    assert variants.margin(spec) == 92


def test_crop_mode_too_small_input_names_smallest_size():
    spec = ArchSpec(skip="crop", width=2, depth=3)
    smallest = min_input_size(spec, 1)
    model = build(spec)
    with pytest.raises(ValueError, match=f"smallest valid input size is {smallest}"):
        model(torch.randn(1, 3, smallest - 1, smallest - 1))
    with pytest.raises(ValueError, match=str(smallest)):
        output_size(spec, 10)


def test_crop_mode_invalid_size_names_neighbours():
    spec = ArchSpec(skip="crop", width=2, depth=2)
    n = min_input_size(spec, 20)
    with pytest.raises(ValueError, match="nearest valid sizes"):
        output_size(spec, n + 1)


@pytest.mark.parametrize("preset", SEEDS)
@pytest.mark.parametrize("cin,classes", [(1, 1), (3, 2)])
def test_seed_presets_equal_the_seed_code(preset, cin, classes):
    spec = variants.PRESETS[preset].replace(in_channels=cin, classes=classes)
    ours, ref = build(spec), reference(preset, cin, classes)
    assert n_params(ours) == n_params(ref)
    # layer by layer: the same multiset of parameter shapes
    assert sorted(tuple(p.shape) for p in ours.parameters()) == sorted(tuple(p.shape) for p in ref.parameters())
    ours.train(), ref.train()
    x = torch.randn(1, cin, 48, 48)
    ys, yr = ours(x), ref(x)
    ys, yr = (ys, yr) if isinstance(yr, list) else ([ys], [yr])
    assert [t.shape for t in ys] == [t.shape for t in yr]


def test_seed001_parameter_count_of_its_document():
    assert n_params(build(variants.PRESETS["seed001"].replace(classes=1))) == 13_394_177


def test_bilinear_changes_only_the_up_operator():
    """One factor: bilinear drops the transposed convs and widens each decoder block's
    first conv by the extra upsampled channels; every other layer is identical."""
    base, bil = ArchSpec(width=8, depth=3), ArchSpec(width=8, depth=3, up="bilinear")
    pb = dict(build(base).named_parameters())
    pl = dict(build(bil).named_parameters())
    ups = {k for k in pb if k.startswith("ups.")}
    assert ups and not any(k.startswith("ups.") for k in pl)
    assert set(pb) - ups == set(pl)
    differ = {k for k in pl if pl[k].shape != pb[k].shape}
    assert differ == {f"blocks.{i}.0.weight" for i in range(3)}
    expected_extra = sum(c * c * 9 for c in (32, 16, 8))  # c_i extra input channels per block
    convt = sum(pb[k].numel() for k in ups)
    assert n_params(build(bil)) - n_params(build(base)) == expected_extra - convt


@pytest.mark.parametrize("skip", ["pad", "crop"])
@pytest.mark.parametrize("up", ["bilinear", "transpose"])
def test_unetpp_fast_mode_equals_full_head(skip, up):
    torch.manual_seed(0)
    spec = ArchSpec(topology="unetpp", deep_supervision=True, width=4, depth=3, skip=skip, up=up)
    full = build(spec)
    n = min_input_size(spec, 8) if skip == "crop" else 24
    x = torch.randn(2, 3, n, n)
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        full.train()(x)
    full.eval()
    with torch.no_grad():
        mean = full(x)
    full_macs = variants_macs(spec, n)
    for k in range(1, 4):
        pruned = full.pruned(k).eval()
        with torch.no_grad():
            yk = pruned(x)
            ref = head_logits(full, x)[k - 1]
        h, w = yk.shape[-2:]
        assert ref.shape[-2:] == (h, w)
        torch.testing.assert_close(yk, ref)
        spec_k = spec.replace(form=f"L{k}")
        assert output_size(spec_k, n) == h
        macs_k = variants_macs(spec_k, n)
        assert (macs_k < full_macs) if k < 3 else (macs_k <= full_macs)
        assert n_params(pruned) <= n_params(full)
    # the accurate mode is the mean of the head logits, cropped to the last head
    hs = head_logits(full, x)
    h, w = hs[-1].shape[-2:]
    torch.testing.assert_close(mean, torch.stack([variants.blocks.center_crop(t, h, w) for t in hs]).mean(0))


def head_logits(model, x):
    """Each head's logits, uncropped, read from the node grid with hooks."""
    outs = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: outs.__setitem__(n, o))
             for n, m in model.heads.items()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return [outs[f"L{k}"] for k in range(1, len(outs) + 1)]


def variants_macs(spec, n):
    from harness.training.cost import count_macs
    return count_macs(spec, n, n)


def test_pruned_state_dict_is_a_subset():
    spec = ArchSpec(topology="unetpp", deep_supervision=True, width=4, depth=3)
    full = build(spec)
    sub = build(spec.replace(form="L2"))
    assert set(sub.state_dict()) < set(full.state_dict())


@pytest.mark.parametrize("spec", [variants.PRESETS[n] for n in variants.PRESETS] + [
    ArchSpec(topology="unetpp", deep_supervision=True, form="L3", skip="crop", width=8, act="relu6"),
    SmpSpec(arch="unetpp", encoder="efficientnet-b0", decoder_channels=(64, 32, 16, 8, 8), classes=3),
    SmpSpec(encoder="resnet18", in_channels=1),
], ids=str)
def test_spec_round_trips(spec):
    assert variants.from_dict(spec.to_dict()) == spec
    assert variants.from_name(spec.name) == spec
    assert variants.parse(spec.name) == spec


def test_name_tokens_default_to_the_baseline():
    assert variants.parse("unet-bilinear") == ArchSpec(up="bilinear")
    assert variants.parse("unetpp-ds-w16-L2") == ArchSpec(topology="unetpp", deep_supervision=True,
                                                          width=16, form="L2")


def test_norm_aliases_are_one_vocabulary():
    """bn/nobn is the vocabulary (values, name tokens); batch/none are accepted aliases."""
    assert ArchSpec(norm="none") == ArchSpec(norm="nobn") == variants.parse("unet-nobn")
    assert variants.parse("unet-none") == variants.parse("unet-nobn")
    assert ArchSpec(norm="batch").norm == "bn" and ArchSpec(norm="batch").name.endswith("-bn-w64-d4-in3-k1")
    assert variants.from_dict({"kind": "unet", "norm": "none"}).to_dict()["norm"] == "nobn"
    assert variants.AXES["norm"] == ("bn", "nobn")


@pytest.mark.parametrize("bad,axis", [
    (dict(act="gelu"), "act"), (dict(up="nearest"), "up"), (dict(width=0), "width"),
    (dict(depth=5, encoder="vgg16"), "depth"), (dict(deep_supervision=True), "deep_supervision"),
    (dict(topology="unetpp", form="L2"), "form"),
    (dict(topology="unetpp", deep_supervision=True, depth=2, form="L3"), "form"),
    (dict(channels="matched", topology="unetpp"), "channels"),
])
def test_invalid_specs_name_the_axis(bad, axis):
    with pytest.raises(ValueError, match=f"^{axis}:"):
        ArchSpec(**bad)


def test_unknown_names_raise_value_error():
    for name in ["nope", "unet-w", "unet-relu-relu6", "smp-unet-notanencoder"]:
        with pytest.raises(ValueError):
            build(name)


def test_vgg16_encoder_loads_torchvision_weights(tmp_path):
    import torchvision

    tv = torchvision.models.vgg16(weights=None)
    path = tmp_path / "vgg16_features.pth"
    torch.save({k: v for k, v in tv.state_dict().items() if k.startswith("features.")}, path)
    spec = variants.PRESETS["seed002"].replace(weights=str(path))
    model = build(spec)
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    tv_convs = [m for m in tv.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(tv_convs) == 13
    for a, b in zip(convs, tv_convs):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    # the same network as the seed's VGG16 feature extractor on its first stages
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(x)[2], tv.features[:16](x))
    # a wrong width is a clear error naming the file
    with pytest.raises(ValueError, match="vgg16_features.pth"):
        build(spec.replace(width=32))


def test_weights_file_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="missing.pth"):
        build(ArchSpec(width=4, weights=str(tmp_path / "missing.pth")))
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        build(ArchSpec(width=4, weights=str(junk)))


def test_own_checkpoint_round_trips(tmp_path):
    spec = ArchSpec(width=4, depth=2)
    a = build(spec)
    torch.save(a.state_dict(), tmp_path / "a.pth")
    b = build(spec.replace(weights=str(tmp_path / "a.pth")))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
