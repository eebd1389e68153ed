"""``unet-ablate status DIR``: how far a sweep has come, read from its results folder only.

Per data set and variant, the planned runs (``sweep.json``) that are ok, failed, diverged,
running (a live claim: its host and the age of its heartbeat) and missing (neither a record
nor a live claim), and an ETA: the runs left times the mean time of the finished runs,
shared among the runners holding claims now (one when none does). A run is recorded when
``run`` would not do it again (``recorded``: the one reading ``plan`` shares); a record
whose ``time_s`` is not a positive finite number is left out of the mean (and counted)."""
from __future__ import annotations

import math

from ..store.layout import Layout
from ..store.records import STATUSES
from ..store.sweep_plan import read_plan
from .claims import live_claim
from .one_run import recorded

COUNTS = ("planned", *STATUSES, "running", "missing")


def run_time(record: dict) -> float | None:
    """A record's ``time_s`` when it is a positive finite number of seconds, else None."""
    t = record.get("time_s")
    ok = isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0
    return float(t) if ok else None


def _eta(times: list[float], left: int, runners: int) -> tuple[float | None, float | None]:
    """(the mean of ``times``, the ETA of ``left`` runs over ``runners``), None where unknown
    (no time yet, or no finite figure)."""
    mean = math.fsum(t / len(times) for t in times) if times else None  # (a sum of huge times: no overflow)
    if not left:
        return mean, 0.0
    eta = None if mean is None else mean * left / runners
    return mean, eta if eta is not None and math.isfinite(eta) else None


def sweep_status(results) -> dict:
    """The counts ``status --json`` gives, the runs running now, and the ETA."""
    plan = read_plan(results)
    if plan is None:
        raise ValueError(f"{results}: no sweep.json (expected the output folder of `unet-ablate run`)")
    layout = Layout(results)
    rows: dict = {}
    running, times, untimed = [], [], 0
    for entry in plan.runs:
        row = rows.setdefault((entry.dataset, entry.variant), {"dataset": entry.dataset, "variant": entry.variant,
                                                               **dict.fromkeys(COUNTS, 0)})
        row["planned"] += 1
        record = recorded(layout.record(entry.key))
        claim = live_claim(results, entry.key)
        if claim is not None:
            row["running"] += 1
            running.append({"dataset": entry.dataset, "variant": entry.variant, "seed": entry.seed,
                            "fold": entry.fold, "host": claim.get("host"), "pid": claim.get("pid"),
                            "heartbeat_age_s": round(claim["age_s"], 1)})
        elif record is not None:
            row[record["status"]] += 1
        else:
            row["missing"] += 1
        if record is not None:
            t = run_time(record)
            times += [] if t is None else [t]
            untimed += t is None
    left = sum(r["missing"] + r["running"] for r in rows.values())
    runners = len({(r["host"], r["pid"]) for r in running}) or 1
    mean, eta = _eta(times, left, runners)
    return {"sweep": plan.name, "variants": list(rows.values()), "running": running,
            "totals": {k: sum(r[k] for r in rows.values()) for k in COUNTS},
            "mean_run_s": mean, "timed_runs": len(times), "untimed_runs": untimed, "runners": runners,
            "eta_s": eta}


def status_text(st: dict) -> str:
    """``status``'s table, the runs running now and the ETA, as printed."""
    names = [f"{r['dataset']}: {r['variant']}" if r["dataset"] else r["variant"] for r in st["variants"]]
    width = max([len(n) for n in names] + [7])
    lines = [f"{'variant':<{width}}  " + "  ".join(f"{c:>8}" for c in COUNTS)]
    for name, r in zip(names, st["variants"]):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{r[c]:>8}" for c in COUNTS))
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{st['totals'][c]:>8}" for c in COUNTS))
    for r in st["running"]:
        fold = "" if r["fold"] is None else f" fold {r['fold']}"
        lines.append(f"running: {r['dataset'] + ': ' if r['dataset'] else ''}{r['variant']} seed {r['seed']}{fold} "
                     f"on {r['host']} (pid {r['pid']}), heartbeat {r['heartbeat_age_s']:.0f} s ago")
    left = st["totals"]["missing"] + st["totals"]["running"]
    if st["eta_s"] is None:
        lines.append("ETA: unknown until a run has finished" if st["mean_run_s"] is None else
                     f"ETA: unknown ({left} run(s) left x {st['mean_run_s']:.3g} s is too large to state)")
    else:
        lines.append(f"ETA: {st['eta_s'] / 60:.1f} min ({left} run(s) left x {(st['mean_run_s'] or 0):.0f} s, the "
                     f"mean of the {st['timed_runs']} finished run(s), over {st['runners']} runner(s))")
    if st["untimed_runs"]:
        lines.append(f"{st['untimed_runs']} record(s) whose time_s is not a positive finite number of seconds "
                     f"(NaN, negative, missing) are left out of the mean")
    return "\n".join(lines)
