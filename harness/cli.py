"""Command line: ``unet-ablate list | profile | plan | run | status | report`` (also ``python -m harness``).

``plan`` says what a sweep holds and what it will cost (and, from a pilot, what it would
conclude) before it runs; ``run`` runs a sweep here (``--workers N``: N runs at once) or as
cluster jobs (``--launcher slurm|local``); any number of runners may share one results
folder; ``status`` counts a folder's runs while they run.

Results go to stdout; diagnostics go through the ``unet_ablate`` logger to stderr (``-v``
for more, ``-q`` for warnings only). User mistakes (an unknown name, an invalid spec, a
bad data folder) and filesystem faults (a read-only folder, a full disk) print one line on
stderr, ``unet-ablate: error: <what, where, expected>``, and exit with status 2; nothing is
half-written (``--debug`` shows the traceback instead). Ctrl-C, at start-up too, prints one
line and exits with 130. This module imports torch only inside ``main``, so that Ctrl-C
during the imports is caught like any other.
"""
from __future__ import annotations

import argparse
import errno
import json
import logging
import shlex
import signal
import sys
import time
from pathlib import Path

from . import log_to_stderr

log = logging.getLogger("unet_ablate")


def cmd_list(args: argparse.Namespace) -> int:
    import variants

    rows = [{"name": n, "spec_name": s.name, "note": variants.PRESET_NOTES.get(n, ""),
             "spec": s.to_dict()} for n, s in variants.PRESETS.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['spec_name']}")
        print(f"{'':<{width}}  {r['note']}")
    print("\nAny spec can be written as its readable name; tokens left out take the "
          "baseline's value, e.g. `unet-bilinear`, `unetpp-ds-w16-L2`, `smp-unet-resnet18`.")
    print("Axes: " + "; ".join(f"{a}: {'|'.join(v)}" for a, v in variants.AXES.items())
          + "; w<width> d<depth> in<C> k<classes> ds L<k>")
    from .spec.expand import recipes_text

    print(recipes_text(width))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from variants.build import with_channels

    from .store.records import mac_convention
    from .training.cost import profile

    spec = with_channels(args.name, args.in_channels, args.classes, ("--in-channels", "--classes"))
    h, w = args.size
    p = profile(spec, h, w)  # a crop-mode size error comes from the model's input check
    if args.json:
        print(json.dumps(p))
        return 0
    print(f"{args.name}: {p['name']}")
    print(f"  parameters   {p['params']:,} ({p['params'] / 1e6:.2f} M)")
    print(f"  MACs         {p['macs']:,} ({p['macs'] / 1e9:.2f} G) for one {h}x{w} image")
    if p["macs_thop"] is None:
        print(f"  MACs (thop)  n/a: {p['thop_missing']} (a test-time cross-check: pip install thop)")
    else:
        print(f"  MACs (thop)  {p['macs_thop']:,} ({p['macs_thop'] / p['macs'] - 1:+.2%} vs headline)")
    print(f"  input        {tuple(p['input_shape'])}")
    print(f"  output       {tuple(p['output_shape'])}")
    print(f"  {mac_convention()}")
    return 0


def run_command(args: argparse.Namespace, out: Path) -> str:
    """The command line that runs this sweep again into ``out`` (completing what is missing)."""
    argv = ["unet-ablate", "run", args.sweep]
    for flag in ("data", "layout", "variants", "seeds", "steps", "folds", "device"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    return shlex.join(argv + (["--tensorboard"] if getattr(args, "tensorboard", False) else []) + ["--out", str(out)])


LAUNCHER_FLAGS = {"partition": "partition", "time_min": "timeout_min", "array_parallelism": "array_parallelism",
                  "gpus_per_task": "gpus_per_task", "cpus_per_task": "cpus_per_task"}  # option -> [launcher] key


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def sweep_of(args: argparse.Namespace, launcher: dict | None = None):
    """The sweep a `run` or `plan` command line names, with its overrides."""
    from .spec.sweep import load_sweep, override

    labels = [s for s in args.variants.split(",") if s] if args.variants else None
    return override(load_sweep(args.sweep), args.data, args.layout, labels, args.seeds, args.steps,
                    args.device, args.folds, launcher=launcher)


def cmd_run(args: argparse.Namespace) -> int:
    from .scheduling.dispatch import run_sweep, submit_sweep
    from .store.layout import Layout
    from .store.runs_table import summary_text

    given = {key: getattr(args, dest) for dest, key in LAUNCHER_FLAGS.items() if getattr(args, dest) is not None}
    if args.launcher is None:
        extra = next((_flag(d) for d in (*LAUNCHER_FLAGS, "no_wait") if getattr(args, d) not in (None, False)), None)
        if extra:
            raise ValueError(f"{extra} needs --launcher slurm|local")
    elif args.workers is not None:
        raise ValueError("--workers runs on this machine and --launcher as jobs: choose one")
    if args.launcher is not None:
        from .scheduling import cluster
        cluster.check_available(args.launcher)  # before anything is loaded or written
    sweep = sweep_of(args, launcher=given)
    if args.tensorboard:
        import dataclasses
        sweep = dataclasses.replace(sweep, tensorboard=True)
    out = Path(args.out or Path("results") / sweep.name)
    if sweep.tensorboard:
        from .training import monitor
        # before anything is written (the package, a writable folder); named as it was asked for
        monitor.check_available(out, "--tensorboard" if args.tensorboard else "[log] tensorboard = true")
    if args.no_wait:
        jobs = submit_sweep(sweep, out, args.launcher, retry_failed=args.retry_failed, command=run_command(args, out))
        if not jobs:
            print(f"nothing to submit: every run of {sweep.name} is recorded in {Layout(out).runs}")
            return 0
        print(f"{len(jobs)} job(s) submitted ({args.launcher}): {' '.join(j.job_id for j in jobs)}")
        print(f"logs in {out}/submitit; `unet-ablate report {out}` works at any time, and the same "
              f"`run` command once they end completes runs.csv (and what they left undone)")
        return 0
    df = run_sweep(sweep, out, retry_failed=args.retry_failed, progress=not (args.no_progress or args.quiet),
                   command=run_command(args, out), workers=args.workers or sweep.workers,
                   launcher=args.launcher)
    if df.empty:
        print(f"no run of {sweep.name} is recorded in {Layout(out).runs} yet")
        return 0
    print(summary_text(df))
    n_bad = int((df.drop_duplicates("key").status != "ok").sum())
    print(f"\n{df.key.nunique()} runs ({n_bad} not ok) in {Layout(out).runs}, table {Layout(out).runs_csv}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from .scheduling.forecast import check_size, device_rate, estimate, plan_text, recorded_keys
    from .scheduling.planning import load_all, plan

    sweep = check_size(sweep_of(args))  # before anything is planned (seeds are bounded as the sweep is read)
    rate = device_rate(sweep, args.device_peak, args.mfu)
    runs = plan(sweep, load_all(sweep))
    est = estimate(sweep, runs, recorded_keys(Path(args.out or Path("results") / sweep.name), runs), rate)
    power = None
    if args.power:
        from .report.power import power_table, power_text

        power = power_table(args.power, len(sweep.seeds), sweep.report.metric)
        est["power"] = json.loads(power.to_json(orient="records"))
    if args.json:
        print(json.dumps(est, indent=2, allow_nan=False))
        return 0
    print(plan_text(est))
    if power is not None:
        print("\n" + power_text(power, args.power))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .scheduling.status import status_text, sweep_status

    st = sweep_status(args.results_dir)
    print(json.dumps(st, indent=2, allow_nan=False) if args.json else status_text(st))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    start = time.perf_counter()
    out = build_report(args.results_dir, args.out, args.metric, figures=not args.no_figures)
    print(f"report: {out / 'index.md'} ({time.perf_counter() - start:.1f} s)")
    return 0


def _size(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text}")
    return v


class _Parser(argparse.ArgumentParser):
    """A command-line mistake is one line, as every user error is (not a usage block)."""

    def error(self, message: str):
        command = self.prog.removeprefix("unet-ablate").strip()
        raise ValueError(f"{command + ': ' if command else ''}{message} (see {self.prog} --help)")


def _verbosity(default) -> argparse.ArgumentParser:
    """-v / -q, accepted before or after the subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", default=default,
                      help="debug diagnostics on stderr (each run's key, device, precision and time)")
    loud.add_argument("-q", "--quiet", action="store_true", default=default,
                      help="warnings and errors only, no progress bars")
    p.add_argument("--debug", action="store_true", default=default,
                   help="a failure shows its full traceback instead of one line")
    return p


def _count(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from .data.spec import LAYOUTS
    from .scheduling.cluster import LAUNCHERS
    from .scheduling.dispatch import DEFAULT_WORKERS
    from .spec.protocol import DEVICES

    p = _Parser(prog="unet-ablate", description=__doc__.splitlines()[0], parents=[_verbosity(False)])
    sub = p.add_subparsers(dest="command", required=True)
    flags = _verbosity(argparse.SUPPRESS)  # a subcommand's default must not undo the main one

    def command(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[flags], **kw)

    q = command("list", help="list the presets and their specs")
    q.add_argument("--json", action="store_true", help="one JSON list")
    q.set_defaults(func=cmd_list)

    q = command("profile", help="parameters, MACs and shapes of one variant")
    q.add_argument("name", help="a preset or a readable spec name")
    q.add_argument("--in-channels", type=_size, help="default: the name's in<C> (a preset's own), else 3")
    q.add_argument("--classes", type=_size, help="default: the name's k<n> (a preset's own), else 1")
    q.add_argument("--size", type=_size, nargs=2, metavar=("H", "W"), default=(256, 256))
    q.add_argument("--json", action="store_true", help="one JSON object")
    q.set_defaults(func=cmd_profile)

    def sweep_flags(q: argparse.ArgumentParser) -> None:
        q.add_argument("sweep", help="a sweep preset (smoke, cpu, gpu, gpu-quick) or a TOML file")
        q.add_argument("--data", metavar="DIR", help="your own folder of images and masks")
        q.add_argument("--layout", choices=LAYOUTS, help="folder layout (default auto)")
        q.add_argument("--variants", metavar="A,B", help="only these variant labels (or spec names), plus the baseline")
        q.add_argument("--seeds", type=int, metavar="N", help="seeds 0..N-1")
        q.add_argument("--steps", type=int, metavar="N", help="training steps per run")
        q.add_argument("--folds", type=int, metavar="K",
                       help="K-fold cross-validation on every data set (each image tested once per seed)")
        q.add_argument("--device", choices=DEVICES)
        q.add_argument("--out", metavar="DIR", help="default: results/<sweep name>")

    q = command("plan", help="the runs of a sweep, those recorded, and an estimate of its device time",
                description="Print the runs of a sweep per data set and variant, how many are recorded "
                            "in its results folder, and an estimated device time (MACs, steps and batch "
                            "at an assumed peak x MFU, stated). Trains nothing.")
    sweep_flags(q)
    from .scheduling.forecast import rate_number
    q.add_argument("--device-peak", type=rate_number, metavar="TFLOPS", help="the device's dense peak (default: "
                   "the GPU's own, else an H200's for a CUDA sweep; on a CPU sweep: the CPU's rate per run)")
    q.add_argument("--mfu", type=rate_number, metavar="F",
                   help="assumed model FLOP utilisation (default 0.35 on a GPU, 1 on the CPU: an effective rate)")
    q.add_argument("--power", metavar="PILOT",
                   help="a pilot results folder: what the planned seeds would conclude at its Δ and variances")
    q.add_argument("--json", action="store_true", help="one JSON object (runs, todo, estimated_gpu_hours, ...)")
    q.set_defaults(func=cmd_plan)

    q = command("status", help="count a results folder's runs: ok, failed, diverged, running, missing; ETA")
    q.add_argument("results_dir", metavar="RESULTS_DIR", help="a folder written by `unet-ablate run`")
    q.add_argument("--json", action="store_true", help='{"variants": [{dataset, variant, planned, ok, ...}]}')
    q.set_defaults(func=cmd_status)

    q = command("run", help="train, evaluate and measure every variant of a sweep (resumable)")
    sweep_flags(q)
    q.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")
    q.add_argument("--no-progress", action="store_true", help="no progress bars")
    q.add_argument("--tensorboard", action="store_true",
                   help="TensorBoard event files per run under OUT/tensorboard (loss, lr, img/s, validation); "
                        "`tensorboard --logdir OUT/tensorboard` ([log] tensorboard = true in a sweep)")
    par = q.add_argument_group("parallel runs and clusters (any number of runners may share one --out folder)")
    par.add_argument("--workers", type=_size, metavar="N",
                     help=f"N runs at once on this machine, in separate processes that split the "
                          f"sweep's CPU threads (or take one GPU each) (default: the sweep's `workers`, else "
                          f"{DEFAULT_WORKERS})")
    par.add_argument("--launcher", choices=LAUNCHERS,
                     help="submit one job per run without a record through submitit (pip install "
                          "unet-ablate[cluster]) and wait for them; local: the same jobs as local processes")
    par.add_argument("--partition", metavar="NAME", help="SLURM partition ([launcher] partition)")
    par.add_argument("--time-min", type=_size, metavar="MIN",
                     help="time limit of each job; a job stopped there is requeued and resumes from its "
                          "checkpoint ([launcher] timeout_min)")
    par.add_argument("--array-parallelism", type=_size, metavar="N",
                     help="at most N jobs at once ([launcher] array_parallelism)")
    par.add_argument("--gpus-per-task", type=_count, metavar="N", help="[launcher] gpus_per_task")
    par.add_argument("--cpus-per-task", type=_size, metavar="N",
                     help="[launcher] cpus_per_task (each run then uses that many threads)")
    par.add_argument("--no-wait", action="store_true",
                     help="with --launcher: print the job ids and return at once")
    q.set_defaults(func=cmd_run)

    q = command("report", help="tables and figures from a results folder (never trains)",
                       description="Build tables (md, tex, csv), figures (pdf, png) and index.md "
                                   "from the run records of a results folder.")
    q.add_argument("results_dir", metavar="RESULTS_DIR", help="a folder written by `unet-ablate run`")
    q.add_argument("--out", metavar="DIR", default=None, help="report folder (default: reports/<sweep>)")
    q.add_argument("--metric", metavar="NAME", default=None,
                   help="the headline metric of the Δ column, intervals, tests and figures (default: "
                        "the sweep's [report] metric, else dice): dice, iou, dice_nn, iou_nn, "
                        "dice_thin, cldice, rand_f, vi, hd95, nsd, dice_c<k>, iou_c<k>, hd95_c<k>, nsd_c<k>")
    q.add_argument("--no-figures", action="store_true",
                   help="tables, captions and index.md only, seconds sooner (figures of an earlier build "
                        "are removed)")
    q.set_defaults(func=cmd_report)
    return p


def _configure_logging(verbose: bool, quiet: bool) -> None:
    log_to_stderr(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


_HINTS = {errno.ENOSPC: "the records written so far are whole; free space and run the same command "
                        "again to go on",
          errno.EACCES: "expected a folder you can write to", errno.EROFS: "expected a folder you can write to",
          errno.EISDIR: "expected a file", errno.ENOTDIR: "expected a folder"}


def error_line(e: BaseException) -> str:
    """The one line a user error or filesystem fault prints: what, where, what was expected."""
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        hint = _HINTS.get(e.errno)
        return f"{where}{e.strerror}" + (f" ({hint})" if hint else "")
    return str(e).splitlines()[0] if str(e) else e.__class__.__name__


def _start_up() -> bool:
    """Import torch and the variants with Ctrl-C held back (an interrupt inside torch's C++
    initialisation aborts the process with a C++ error instead of raising); True when
    Ctrl-C was pressed meanwhile."""
    pressed = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: pressed.append(True))
    except ValueError:  # not the main thread: nothing to hold back
        previous = None
    try:
        import torch  # noqa: F401

        import variants  # noqa: F401
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return bool(pressed)


def _terminated(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (kill, a scheduler) ends a command as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    debug, previous = False, None
    try:
        if _start_up():
            raise KeyboardInterrupt
        try:  # after start-up: an interrupt inside torch's initialisation aborts the process
            previous = signal.signal(signal.SIGTERM, _terminated)
        except ValueError:  # not the main thread
            pass
        args = build_parser().parse_args(argv)
        debug = args.debug
        _configure_logging(args.verbose, args.quiet)
        return args.func(args)
    except (ValueError, OSError) as e:
        if debug:
            raise
        print(f"unet-ablate: error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("unet-ablate: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
