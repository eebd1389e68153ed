"""The command line as a user runs it: list, profile, and one-line errors with exit 2."""
import json
import logging

import pytest

import variants
from harness.cli import main


def test_list_json_has_every_preset(capsys):
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(variants.PRESETS)
    for r in rows:
        assert variants.from_dict(r["spec"]) == variants.PRESETS[r["name"]]


def test_profile_json_seed001(capsys):
    assert main(["profile", "seed001", "--in-channels", "1", "--classes", "1", "--size", "64", "48", "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["params"] == 13_394_177
    assert p["input_shape"] == [1, 1, 64, 48] and p["output_shape"] == [1, 1, 64, 48]
    assert all(isinstance(p[k], int) for k in ("params", "macs", "macs_thop"))
    assert abs(p["macs_thop"] / p["macs"] - 1) < 0.02


def test_profile_defaults_and_spec_names(capsys):
    assert main(["profile", "unetpp-ds-w8-L2", "--size", "32", "32", "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["input_shape"] == [1, 3, 32, 32] and p["output_shape"] == [1, 1, 32, 32]
    assert p["spec"]["form"] == "L2"


def test_profile_human_readable(capsys):
    assert main(["profile", "seed004", "--size", "32", "32"]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "MACs" in out and "(1, 3, 32, 32)" in out


@pytest.mark.parametrize("args,needle", [
    (["profile", "no-such-net"], "no-such-net"),
    (["profile", "unet-crop", "--size", "64", "64"], "smallest valid input size is 188"),
    (["profile", "unet-vgg16-d6"], "depth"),
])
def test_user_errors_are_one_line_exit_2(fails_cleanly, args, needle):
    fails_cleanly(*args, names=[needle])


def test_diagnostics_go_through_the_logger_and_its_levels(capsys):
    """-v shows debug diagnostics, -q leaves warnings only; results stay on stdout."""
    log = logging.getLogger("unet_ablate")
    for argv, level in [(["list", "--json"], logging.INFO), (["-v", "list", "--json"], logging.DEBUG),
                        (["-q", "list", "--json"], logging.WARNING), (["list", "--json", "-q"], logging.WARNING),
                        (["list", "-v", "--json"], logging.DEBUG)]:
        assert main(argv) == 0
        assert log.level == level
        log.info("a diagnostic")
        out, err = capsys.readouterr()
        json.loads(out)  # stdout holds the result only
        assert ("unet-ablate: a diagnostic" in err) == (level <= logging.INFO)
