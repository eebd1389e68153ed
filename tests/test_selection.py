"""Model selection on the declared headline: ``[report] metric`` sets ``protocol.select``, the
weights kept are those with the best validation score on it (in its own direction), the
record says which, and the run key changes only when the metric is not Dice.

Validation scores are scripted (read from the steps BatchNorm has counted), so no test here
predicts a training trajectory."""
import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_sweep

import variants
from harness.data import DataSpec, load_dataset
from harness.metrics import per_image_from_counts
from harness.scheduling.planning import arch_for_data
from harness.spec.protocol import Protocol, RunSpec
from harness.spec.sweep import load_sweep
from harness.store import records
from harness.training.evaluate import image_scores, score, validation_scores
from harness.training.execution import Execution
from harness.training.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = DataSpec("shapes", n_images=6, size=32)
# evaluations at steps 2, 4, 6, 8: (Dice, HD95). Dice is best at step 4, HD95 (lower) at 6.
SCRIPT = {2: (0.5, 9.0), 4: (0.9, 5.0), 6: (0.7, 2.0), 8: (0.6, float("nan"))}


@pytest.fixture(scope="module")
def data():
    return load_dataset(DATA)


def scripted(model, spec, images, masks, num_classes, ex, select="dice"):
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    dice, hd = SCRIPT[int(bn.num_batches_tracked)]
    return dice, (dice if select == "dice" else hd)


def train(data, select, monkeypatch):
    monkeypatch.setattr("harness.training.train.validation_scores", scripted)
    spec = arch_for_data(variants.parse("unet-w4-d2"), data)
    torch.manual_seed(0)
    model = variants.build(spec)
    p = Protocol(steps=8, batch_size=2, patch=32, loss="ce", eval_every=2, select=select)
    return model, fit(model, spec, data, p, 0, Execution())


def test_the_weights_kept_are_the_best_on_the_selection_metric_in_its_direction(data, monkeypatch):
    model, fr = train(data, "dice", monkeypatch)
    assert (fr.best_step, fr.best_val_dice, fr.selected_on) == (4, 0.9, "dice")
    assert all("val_score" not in h for h in fr.history)
    model, fr = train(data, "hd95", monkeypatch)  # lower is better; NaN never beats a number
    assert (fr.best_step, fr.best_val_score, fr.best_val_dice, fr.selected_on) == (6, 2.0, 0.7, "hd95")
    assert [h["val_score"] for h in fr.history][:3] == [9.0, 5.0, 2.0] and math.isnan(fr.history[3]["val_score"])
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 6  # the model ends holding step 6's weights


def test_select_enters_the_run_key_only_when_not_dice():
    assert RunSpec(arch={}, data={}).key == "be493e4453e30d70"  # the key before select existed
    base = RunSpec(arch={"name": "x"}, data=DATA.to_dict())
    assert "select" not in Protocol().to_dict()
    assert RunSpec(arch={"name": "x"}, data=DATA.to_dict(), protocol=Protocol(select="dice")).key == base.key
    assert RunSpec(arch={"name": "x"}, data=DATA.to_dict(), protocol=Protocol(select="hd95")).key != base.key
    with pytest.raises(ValueError, match="protocol.select: metric 'dcie'"):
        Protocol(select="dcie")


# the sweep "s" of the defaults (seeds, data size, protocol, measure) on shapes: no [protocol] but what a test adds
BARE = {"name": "s", "seeds": None, "data": {"n_images": None, "size": None}, "protocol": None, "measure": None,
        "variants": {"one_factor": None}}


def _sweep(tmp_path, **tables):
    path = tmp_path / "s.toml"
    tiny_sweep(path, BARE, tables)
    return load_sweep(str(path))


def test_a_sweep_selects_on_its_headline_unless_its_protocol_says_otherwise(tmp_path):
    assert _sweep(tmp_path).protocol.select == "dice"
    assert _sweep(tmp_path, report={"metric": "cldice"}).protocol.select == "cldice"
    both = {"report": {"metric": "cldice"}, "protocol": {"select": "dice_thin"}}
    assert _sweep(tmp_path, **both).protocol.select == "dice_thin"
    with pytest.raises(ValueError, match="protocol.select"):
        _sweep(tmp_path, protocol={"select": "nope"})


def test_validation_scores_are_the_means_the_report_takes(data):
    """Dice and the selection metric of a real model on the validation split, against the
    per-image values computed here from the same predictions."""
    from harness.training.predict import predict_classes

    spec = arch_for_data(variants.parse("unet-w4-d2"), data)
    torch.manual_seed(0)
    model = variants.build(spec).eval()
    x, y, _ = data.subset("val")
    ex = Execution()
    preds = predict_classes(model, spec, x, ex)
    counts = score(preds, y, data.num_classes)
    dice, same = validation_scores(model, spec, x, y, data.num_classes, ex)
    assert dice == same == pytest.approx(per_image_from_counts(counts, "dice").mean())
    _, iou = validation_scores(model, spec, x, y, data.num_classes, ex, "iou")
    assert iou == pytest.approx(per_image_from_counts(counts, "iou").mean())
    _, hd = validation_scores(model, spec, x, y, data.num_classes, ex, "hd95")
    assert hd == pytest.approx(np.nanmean(image_scores(preds, y, data.num_classes, counts)["values"]["hd95"]))


def test_records_say_what_the_weights_were_selected_on(tmp_path):
    """Records written before selection on any metric read as selected on Dice."""
    from harness.scheduling.one_run import run_one
    from harness.spec.protocol import Measure

    data = load_dataset(DATA)
    p = Protocol(steps=2, batch_size=2, patch=32, loss="ce", eval_every=2, select="iou")
    rs = RunSpec(arch=arch_for_data(variants.parse("unet-w4-d2"), data).to_dict(), data=DATA.to_dict(), protocol=p,
                 measure=Measure(size=(32, 32), batch_size=2, warmup=0, min_run_time=0.01, repeats=3))
    rec = run_one(rs, data)
    assert rec["status"] == "ok", rec["error"]
    assert rec["train"]["selected_on"] == "iou" and rec["train"]["best_val_score"] is not None
    del rec["train"]["selected_on"], rec["train"]["best_val_score"]
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / f"{rec['key']}.json").write_text(json.dumps(rec))
    [read] = records.load_records(tmp_path)
    assert read["train"]["selected_on"] == "dice"
    assert read["train"]["best_val_score"] == read["train"]["best_val_dice"]


def test_the_methods_say_what_the_weights_were_selected_on():
    from harness.report.describe import selection_text

    recs = [{"train": {"selected_on": "dice"}}, {"train": None}]
    lead = "model selection uses the validation split (each run keeps the weights with the best validation "
    assert selection_text(recs) == lead + "Dice)"
    recs += [{"train": {"selected_on": "hd95"}}, {"train": {"selected_on": "hd95"}}]
    assert selection_text(recs) == lead + "Dice (1 run) or HD95 (px) (2 runs))"
