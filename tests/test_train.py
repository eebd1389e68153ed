"""Training details that decide whether variants are compared fairly."""
import numpy as np
import pytest
import torch

import variants
from harness.metrics import IGNORE
from harness.training.predict import mirror_pad
from harness.training.train import PatchSampler
from variants import input_geometry


@pytest.mark.parametrize("name,patch", [("unet-w4-d2", 32), ("unet-crop-w4-d3", 64), ("unet-crop-w4-d3", 48),
                                        ("unetpp-ds-crop-w4-d2", 40)])
def test_every_variant_learns_from_patch_squared_pixels(name, patch):
    spec = variants.parse(name).replace(in_channels=1)
    rng = np.random.default_rng(0)
    images = [rng.random((1, 90, 80), dtype=np.float32) for _ in range(3)]
    masks = [rng.integers(0, 2, (90, 80)) for _ in range(3)]
    sampler = PatchSampler(images, masks, spec, patch, augment=True, rng=rng)
    x, y = sampler.batch(4)
    n, m = input_geometry(spec, patch)
    assert x.shape == (4, 1, n, n)
    assert y.shape[-2:] == (n - 2 * m, n - 2 * m)
    with torch.no_grad():
        out = variants.build(spec).eval()(x)
    assert out.shape[-2:] == y.shape[-2:]
    assert ((y != IGNORE).sum(dim=(1, 2)) == patch * patch).all()


def test_training_context_is_mirrored_as_in_evaluation():
    """Output pixel j of a crop-mode model sees input j + margin: the sampler's patch at the
    image corner must equal the evaluation's mirror-padded input."""
    spec = variants.parse("unet-crop-w4-d2").replace(in_channels=1)
    rng = np.random.default_rng(0)
    image = rng.random((1, 40, 40), dtype=np.float32)
    mask = np.zeros((40, 40), dtype=np.int64)
    sampler = PatchSampler([image], [mask], spec, 16, augment=False, rng=rng)
    n, m = sampler.n, sampler.m
    evaluated = mirror_pad(torch.from_numpy(image)[None], m, m, m, m)[0].numpy()
    np.testing.assert_array_equal(sampler.images[0][:, :n, :n], evaluated[:, :n, :n])


@pytest.mark.parametrize("num_classes", [2, 4])
def test_every_registered_choice_validates_and_builds(num_classes):
    """A name that a protocol accepts is a name that training can build: one registry each."""
    from harness.spec.choices import LOSSES, OPTIMIZERS, PRECISIONS, SCHEDULES, lr_factor, resolve_precision
    from harness.spec.protocol import Protocol

    model = variants.build(variants.ArchSpec(width=2, depth=1, in_channels=1,
                                             classes=1 if num_classes == 2 else num_classes))
    x = torch.randn(2, 1, 8, 8)
    target = torch.randint(0, num_classes, (2, 8, 8))
    target[0, 0, 0] = IGNORE
    for name in OPTIMIZERS:
        p = Protocol(optimizer=name)
        assert isinstance(OPTIMIZERS[p.optimizer](p, model.parameters()), torch.optim.Optimizer)
    for name in LOSSES:
        loss = LOSSES[Protocol(loss=name).loss](num_classes)(model(x), target)
        assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    for name in SCHEDULES:
        p = Protocol(schedule=name, steps=10, warmup=2)
        assert lr_factor(p, 0) == 0.5 and lr_factor(p, 2) == 1.0  # warm-up, then the schedule at t=0
    for name in PRECISIONS:  # on CPU every precision resolves to float32 and a null context
        prec = resolve_precision(Protocol(amp=name).amp, torch.device("cpu"))
        with prec.amp():
            assert prec.dtype == "float32" and not torch.is_autocast_enabled()
    registries = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "loss": LOSSES, "amp": PRECISIONS}
    for field, bad in [("optimizer", "lion"), ("schedule", "step"), ("loss", "focal"), ("amp", "fp8")]:
        expected = " | ".join(registries[field]).replace("+", r"\+")
        with pytest.raises(ValueError, match=f"protocol.{field}: expected {expected}, got '{bad}'"):
            Protocol(**{field: bad})


def test_prefetched_batches_are_the_inline_ones_and_say_where_the_generator_stands():
    """A CUDA run samples ahead in a thread (``batches.Batches``): the same batches, in the
    same order; its ``state`` is the generator's after the last batch taken (what a
    checkpoint holds), not the thread's, which runs ahead."""
    from harness.training.batches import Batches
    from harness.training.execution import Execution

    rng = np.random.default_rng(0)
    images = [rng.random((1, 40, 40), dtype=np.float32) for _ in range(3)]
    masks = [(rng.random((40, 40)) < 0.5).astype(np.int64) for _ in range(3)]
    spec = variants.parse("unet-w4-d2").replace(in_channels=1)

    def sampler(seed=1):
        return PatchSampler(images, masks, spec, 16, augment=True, rng=np.random.default_rng(seed))

    inline = Batches(sampler(), 4, Execution(), prefetch=False)
    ahead = Batches(sampler(), 4, Execution(), prefetch=True)
    try:
        for _ in range(3):
            (x, y), (px, py) = inline.next(), ahead.next()
            assert torch.equal(x, px) and torch.equal(y, py)
        resumed = sampler()
        resumed.rng.bit_generator.state = ahead.state  # as a checkpoint written now resumes
        x, y = Batches(resumed, 4, Execution(), prefetch=False).next()
        px, py = ahead.next()
        assert torch.equal(x, px) and torch.equal(y, py)
        assert inline.state is None  # inline: the generator's own state is the one
    finally:
        ahead.close()
