"""Micro-benchmarks (`make bench`): compared side by side in one run, read as ratios.

Not part of `make test`; pytest-benchmark groups the cases so that each table shows the
ratio of every variant to the first of its group."""
import pytest
import torch

import variants
from harness.metrics import confusion_counts
from harness.training.cost import count_macs, count_macs_thop

torch.set_num_threads(2)
pytestmark = pytest.mark.slow

SIZE = 96


def _step(model, x):
    model.zero_grad(set_to_none=True)
    out = model(x)
    (sum(o.mean() for o in out) if isinstance(out, list) else out.mean()).backward()


@pytest.mark.benchmark(group="train step: one factor (w16, 96x96, batch 8)")
@pytest.mark.parametrize("name", ["unet-w16", "unet-relu6-w16", "unet-bilinear-w16", "unet-nobn-w16",
                                  "unet-vgg16-w16", "unetpp-ds-w16"])
def test_train_step(benchmark, name):
    model = variants.build(name).train().to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    benchmark.pedantic(_step, args=(model, x), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="memory format: train step, baseline w16")
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
def test_memory_format(benchmark, fmt):
    mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    model = variants.build("unet-w16").train().to(memory_format=mf)
    x = torch.randn(8, 3, SIZE, SIZE).contiguous(memory_format=mf)
    benchmark.pedantic(_step, args=(model, x), rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="MAC counting: baseline w64 at 256x256")
@pytest.mark.parametrize("how", ["flopcounter-meta", "thop"])
def test_mac_counting(benchmark, how):
    spec = variants.parse("baseline")
    if how == "thop":
        model = variants.build(spec)
        benchmark.pedantic(count_macs_thop, args=(model, 3, 256, 256), rounds=2)
    else:
        benchmark.pedantic(count_macs, args=(spec, 256, 256), rounds=2)


@pytest.mark.benchmark(group="confusion counts: 512x512, 3 classes")
def test_confusion_counts(benchmark):
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 4, (512, 512), generator=g)
    ref = torch.randint(0, 4, (512, 512), generator=g)
    benchmark(confusion_counts, pred, ref, [1, 2, 3])


@pytest.mark.benchmark(group="report inference: one comparison, 5 seeds x 200 images")
@pytest.mark.parametrize("what", ["two-stage bootstrap (10,000)", "sign-flip (Monte Carlo) + seed t"])
def test_report_inference(benchmark, what):
    import numpy as np

    from harness.report.stats import hierarchical_bootstrap, seed_t_p, signflip_p

    rng = np.random.default_rng(0)
    ya, yb = rng.uniform(0.7, 0.95, (5, 200)), rng.uniform(0.7, 0.95, (5, 200))
    fn = (lambda: hierarchical_bootstrap(ya, yb, 0.99, paired=True)) if what.startswith("two") \
        else (lambda: (signflip_p((ya - yb).mean(axis=0)), seed_t_p(ya - yb)))
    benchmark.pedantic(fn, rounds=3, warmup_rounds=1)
