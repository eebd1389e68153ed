"""Run records as types (``harness.store.record_types``): the TypedDicts describe what the runner
writes, and the one validator built from them accepts every record a version of the harness
wrote (schema 2 and 3, sections written before keys were added) and rejects anything else with
one line naming the place. Records built by hand as the runner builds them; no training."""
import copy
import json

import pytest
from test_report import baseline_counts, form, record

from harness.store import records
from harness.store.record_types import DataSection, EnvSection, FormEntry, RunRecord, TrainSection
from harness.store.records import check_record

PREFIX = "x: not a run record of schema 2 or 3: "


@pytest.fixture(scope="module")
def written() -> dict:
    """A record as the runner writes it (status ok, one form), read back from its JSON."""
    return json.loads(json.dumps(record("baseline", 0, [form("mean", baseline_counts(0), 0, 2e9)])))


@pytest.fixture
def rec(written) -> dict:
    return copy.deepcopy(written)


def problem(rec) -> str:
    """What check_record says about ``rec``, without the prefix every message has."""
    with pytest.raises(ValueError) as e:
        check_record(rec, "x")
    message = str(e.value)
    assert message.startswith(PREFIX) and "\n" not in message, message
    return message[len(PREFIX):]


def schema_2(rec: dict) -> dict:
    """``rec`` as a record written before image_metrics, data-set labels, k-fold, failure
    causes and the training keys added since (TRAIN_ADDED)."""
    rec["schema"] = 2
    for key in ("dataset", "fold", "cause"):
        del rec[key]
    for f in rec["forms"]:
        del f["image_metrics"]
    for key in records.TRAIN_ADDED:
        del rec["train"][key]
    for key in ("split", "fold", "folds"):
        del rec["data"][key]
    return rec


# --------------------------------------------------------------------------- what is accepted

def test_the_types_name_every_key_the_runner_writes(rec):
    assert set(rec) == set(RunRecord.__annotations__)
    assert set(rec["forms"][0]) == set(FormEntry.__annotations__)
    assert set(rec["train"]) == set(TrainSection.__annotations__) == set(records.TRAIN_KEYS)
    assert set(rec["data"]) == set(DataSection.__annotations__)
    assert set(rec["env"]) == set(EnvSection.__annotations__)
    assert records.STATUSES == ("ok", "failed", "diverged")


def test_a_record_the_runner_writes_is_accepted_as_it_is(rec, written):
    assert check_record(rec, "x") is rec
    assert rec == {**written, "dataset": "membranes"}  # its Labels name no data set: the data's default label


def test_a_schema_2_record_is_accepted_and_filled_in(rec):
    old = schema_2(rec)
    assert check_record(old, "x") is old
    assert old["dataset"] == "membranes" and old["fold"] is None  # the data's default label; holdout
    assert (old["train"]["selected_on"], old["train"]["best_val_score"]) == ("dice", old["train"]["best_val_dice"])
    assert all(old["train"][k] is None for k in ("compile_s", "train_tflops", "mfu"))
    assert "cause" not in old and "image_metrics" not in old["forms"][0]


def test_a_failed_run_without_training_or_forms_is_accepted(rec):
    rec.update(status="failed", error="RuntimeError: boom", traceback="Traceback ...", cause="run",
               train=None, forms=[], finished=None, time_s=None, factor=None)
    assert check_record(rec, "x") is rec


def test_lists_of_tables_are_checked_as_lists_never_walked(rec):
    """A training history is a list: only the container is checked (its tables vary by version)."""
    rec["train"]["history"] = [None]
    assert check_record(rec, "x") is rec


# --------------------------------------------------------------------------- the numbers

def test_the_numbers_of_a_written_record_are_in_range(rec):
    assert records.values_problem(rec) is None


@pytest.mark.parametrize("change, message", [
    (lambda f: f["counts"]["values"][0][0].__setitem__(1, -6000),
     "forms[0].counts.values: a count that is not a whole number >= 0"),
    (lambda f: f["counts"]["values"][0].__setitem__(0, [7000, -6000, 0, 0]), "a count that is not a whole number"),
    (lambda f: f["counts"]["values"][0][0].__setitem__(0, 2.5), "a count that is not a whole number"),
    (lambda f: f["counts"]["values"][0][0].__setitem__(0, "7"), "forms[0].counts.values: expected numbers of shape"),
    (lambda f: f["counts"].__setitem__("values", ["not", "counts"]), "expected numbers of shape (12, 1, 4)"),
    (lambda f: f["counts"]["values"].pop(), "expected numbers of shape (12, 1, 4)"),
    (lambda f: f["metrics"].__setitem__("dice", 7), "forms[0].metrics.dice is 7 (outside the range of dice"),
    (lambda f: f["metrics"].__setitem__("iou", -0.1), "forms[0].metrics.iou is -0.1"),
    (lambda f: f["metrics"].__setitem__("fpr_empty", 1.5), "forms[0].metrics.fpr_empty is 1.5"),
    (lambda f: f["metrics"].__setitem__("n_images", -1), "forms[0].metrics.n_images is -1"),
    (lambda f: f["image_metrics"]["values"].__setitem__("vi", [-7.0] * 12), "image_metrics.values.vi is [-7.0"),
    (lambda f: f["image_metrics"]["values"].__setitem__("hd95", [float("inf")] * 12), "values.hd95 is [inf"),
    (lambda f: f["image_metrics"]["values"].__setitem__("cldice", [1.2] * 12), "values.cldice is [1.2"),
    (lambda f: f["image_metrics"]["values"].__setitem__("rand_f", ["x"] * 12), "values.rand_f is ['x'"),
])
def test_numbers_outside_their_range_leave_the_record_out(rec, change, message):
    """Counts [7000, -6000, 0, 0] gave an IoU of 1.559, a VI of -7 a Δ of -2.8, and Dice 7 was
    shown as 7.0: such a record is not one the runner writes."""
    change(rec["forms"][0])
    assert message in problem(rec)


def test_nan_is_an_image_a_metric_leaves_out_and_null_too(rec):
    values = rec["forms"][0]["image_metrics"]["values"]
    values["hd95"] = [float("nan")] + values["hd95"][1:]
    values["nsd"] = [None] + values["nsd"][1:]
    assert check_record(rec, "x") is rec


def test_the_classes_of_one_image_count_the_same_pixels(rec):
    counts = rec["forms"][0]["counts"]
    counts["classes"] = [1, 2]
    counts["values"] = [[row[0], [1, 0, 0, 5]] for row in counts["values"]]  # 6 pixels beside the first class's
    assert "the classes of one image count different numbers of pixels" in problem(rec)


def test_a_record_under_another_runs_name_is_not_that_runs_record(rec, tmp_path):
    records.write_record(tmp_path, rec)
    copy_path = tmp_path / "runs" / "someoneelse.json"
    copy_path.write_text((tmp_path / "runs" / f"{rec['key']}.json").read_text())
    with pytest.raises(ValueError, match=f"not the record of run someoneelse: it holds run {rec['key']}"):
        records.read_record(copy_path, "someoneelse")
    skipped = []
    assert [r["key"] for r in records.load_records(tmp_path, skipped=skipped)] == [rec["key"]]
    assert len(skipped) == 1 and "someoneelse.json: not the record of run someoneelse" in skipped[0]


def test_a_whole_number_of_seconds_is_a_time(rec):
    rec["time_s"] = 60
    assert check_record(rec, "x") is rec


# --------------------------------------------------------------------------- what is rejected

@pytest.mark.parametrize("content, message", [
    ([], "JSON [] where a record object belongs"),
    ({}, "no schema key"),
    ({"schema": 2}, "key is missing"),
    ({"schema": 1}, "it has schema 1 (written by another version; run the sweep again)"),
])
def test_what_is_not_a_record_object_of_a_readable_schema(content, message):
    assert problem(content) == message


@pytest.mark.parametrize("key, value", [
    ("seed", True),          # a bool is not an int
    ("is_baseline", 1),      # nor an int a bool
    ("variant", 3),          # an int where a str belongs
    ("key", None),
    ("factor", 0),
    ("time_s", "60"),
    ("time_s", False),
    ("finished", 1.5),
    ("fold", True),          # optional keys are checked when there
    ("dataset", 5),
    ("cause", 1),
    ("status", 5),
    ("forms", {}),
])
def test_a_top_level_value_of_the_wrong_type(rec, key, value):
    rec[key] = value
    assert problem(rec) == f"{key} is {value!r}"


@pytest.mark.parametrize("key", ["traceback", "env", "forms", "status", "spec", "data"])
def test_a_missing_top_level_key(rec, key):
    del rec[key]
    assert problem(rec) == f"{key} is missing"


@pytest.mark.parametrize("path", ["forms.0.counts.values", "forms.0.cost.macs", "forms.0.predictions.data",
                                  "forms.0.image_metrics.values", "forms.0.metrics.dice", "forms.0.counts",
                                  "spec.arch", "data.image_size", "env.python", "train.history"])
def test_a_missing_nested_key(rec, path):
    *parents, key = path.split(".")
    section = rec
    for p in parents:
        section = section[int(p) if p.isdigit() else p]
    del section[key]
    assert problem(rec) == path.replace(".0.", "[0].") + " is missing"


def test_a_schema_3_form_without_image_metrics(rec):
    del rec["forms"][0]["image_metrics"]
    assert problem(rec) == "forms[0].image_metrics is missing"


@pytest.mark.parametrize("path, value, where", [
    ("data", [1], "data"),
    ("spec", "unet", "spec"),
    ("env", None, "env"),
    ("train", [1], "train"),           # null or a table
    ("forms", [3], "forms[0]"),
    ("forms.0.counts", "x", "forms[0].counts"),
    ("forms.0.image_metrics", None, "forms[0].image_metrics"),
])
def test_a_section_that_is_not_a_table(rec, path, value, where):
    *parents, key = path.split(".")
    section = rec
    for p in parents:
        section = section[int(p) if p.isdigit() else p]
    section[key] = value
    assert problem(rec) == f"{where} is not a table"


@pytest.mark.parametrize("section, key, value, message", [
    (None, "status", "done", "status 'done' (expected ok, failed, diverged)"),
    ("data", "split", "random", "data.split 'random' (expected holdout, kfold)"),
])
def test_a_value_outside_its_literal(rec, section, key, value, message):
    (rec if section is None else rec[section])[key] = value
    assert problem(rec) == message


def test_the_first_problem_is_named(rec):
    """Every key of a level before the tables inside it, in the order of the types."""
    rec["variant"] = 3
    del rec["forms"][0]["counts"]["values"]
    assert problem(rec) == "variant is 3"
    rec["variant"] = "baseline"
    assert problem(rec) == "forms[0].counts.values is missing"


def test_a_name_that_is_a_path_is_still_refused(rec):
    rec["data"]["key"] = "../k"
    assert problem(rec) == "data.key '../k' is not a plain name (letters, digits, '.', '_', '-'), so it names no file"
