"""``unet-ablate status DIR``: how far a sweep has come, read from its results folder only.

Per data set and variant, the planned runs (``sweep.json``) that are ok, failed, diverged,
running (a live claim: its host and the age of its heartbeat) and missing (neither a record
nor a live claim), and an ETA: the runs left times the mean time of the finished runs,
shared among the runners holding claims now (one when none does)."""
from __future__ import annotations

import statistics

from ..store.layout import Layout
from ..store.records import STATUSES
from ..store.sweep_plan import read_plan
from .claims import live_claim
from .one_run import existing_record

COUNTS = ("planned", *STATUSES, "running", "missing")


def sweep_status(results) -> dict:
    """The counts ``status --json`` gives, the runs running now, and the ETA."""
    plan = read_plan(results)
    if plan is None:
        raise ValueError(f"{results}: no sweep.json (expected the output folder of `unet-ablate run`)")
    layout = Layout(results)
    rows: dict = {}
    running, times = [], []
    for entry in plan.runs:
        row = rows.setdefault((entry.dataset, entry.variant), {"dataset": entry.dataset, "variant": entry.variant,
                                                               **dict.fromkeys(COUNTS, 0)})
        row["planned"] += 1
        record = existing_record(layout.record(entry.key), warn=False)
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
        if record is not None and record.get("time_s"):
            times.append(float(record["time_s"]))
    left = sum(r["missing"] + r["running"] for r in rows.values())
    runners = len({(r["host"], r["pid"]) for r in running}) or 1
    eta = statistics.fmean(times) * left / runners if times and left else (0.0 if not left else None)
    return {"sweep": plan.name, "variants": list(rows.values()), "running": running,
            "totals": {k: sum(r[k] for r in rows.values()) for k in COUNTS},
            "mean_run_s": statistics.fmean(times) if times else None, "runners": runners, "eta_s": eta}


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
    if st["eta_s"] is None:
        lines.append("ETA: unknown until a run has finished")
    else:
        lines.append(f"ETA: {st['eta_s'] / 60:.1f} min ({st['totals']['missing'] + st['totals']['running']} runs left "
                     f"x {(st['mean_run_s'] or 0):.0f} s, the mean of the finished runs, over {st['runners']} "
                     f"runner(s))")
    return "\n".join(lines)
