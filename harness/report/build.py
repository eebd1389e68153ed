"""``build_report``: a results folder in, a report folder out (tables, figures, index.md).

Reads only the run records (and ``sweep.json`` when present); never trains. The same
records give byte-identical tables: rows are sorted deterministically and the bootstrap
uses a fixed seed.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..records import load_records
from .describe import caption, methods
from .figures import draw_figures
from .index import write_index
from .stats import baseline_variant, summary_table, variant_order
from .tables import markdown, write_tables

REQUIRED = ("key", "variant", "seed", "status", "spec")


def read_sweep(results_dir: Path) -> tuple[dict, list[str]]:
    """``sweep.json`` as {"name", "baseline", "variants"} (missing keys left out), and notes."""
    path = Path(results_dir) / "sweep.json"
    if not path.is_file():
        return {}, []
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {}, [f"{path} could not be read ({e.__class__.__name__}); it was ignored"]
    if not isinstance(raw, dict):
        return {}, [f"{path} is not a JSON object; it was ignored"]
    sweep = {k: raw[k] for k in ("name", "baseline") if isinstance(raw.get(k), str)}
    labels = []
    for v in raw.get("variants") or []:  # labels, or {"label": ...} tables
        label = (v.get("label") or v.get("name")) if isinstance(v, dict) else v
        if isinstance(label, str):
            labels.append(label)
    if labels:
        sweep["variants"] = labels
    return sweep, []


def sweep_name(records: list[dict], sweep: dict, results_dir: Path) -> str:
    """The records' ``sweep`` field (when they agree), else sweep.json's name, else the folder."""
    names = sorted({str(r["sweep"]) for r in records if r.get("sweep")})
    name = names[0] if len(names) == 1 else sweep.get("name") or Path(results_dir).resolve().name
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "report"


def _check(records: list[dict]) -> None:
    for r in records:
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise ValueError(f"run record {r.get('key', '?')}: missing {', '.join(missing)}")


def build_report(results_dir, out_dir=None) -> Path:
    """Write the report of ``results_dir`` into ``out_dir`` (default ``reports/<sweep>``)
    and return that folder. A missing folder or one without records is a ValueError."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"{results_dir}: no such results folder")
    records = load_records(results_dir)
    _check(records)
    sweep, notes = read_sweep(results_dir)
    name = sweep_name(records, sweep, results_dir)
    out = Path(out_dir) if out_dir is not None else Path("reports") / name
    out.mkdir(parents=True, exist_ok=True)

    baseline = baseline_variant(records, sweep)
    if baseline is None:
        notes.append("no run is flagged as the baseline (is_baseline), so no Δ, intervals or tests")
    order = variant_order(records, baseline, sweep.get("variants"))
    summary = summary_table(records, baseline, order)
    cap = caption(records, summary, name, baseline)
    write_tables(records, summary, cap, name, out)

    figures = draw_figures(records, summary, order, baseline, out)
    for f in figures:  # a skipped figure leaves no stale file of an earlier build behind
        if not f.files:
            for suffix in (".pdf", ".png"):
                (out / f"{f.name}{suffix}").unlink(missing_ok=True)
    write_index(out, sweep_name=name, results_dir=str(results_dir), n_records=len(records),
                methods=methods(records, summary, baseline), table_md=markdown(summary, cap),
                figures=figures, records=records, notes=notes)
    return out
