"""The front page ``index.md``: title, the planned runs that are missing (with the command
that completes them), methods, the table, the figures, and every run that failed or
diverged with its error text."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..fileio import write_text_atomic
from ..metrics import metric as metric_info
from .describe import mixed_text
from .style import FigureResult
from .summary import margin_of

MAX_ERROR_LINES = 20


def failures_markdown(records: list[dict]) -> str:
    """A list of the runs whose status is not ok, each with (the tail of) its error."""
    bad = sorted((r for r in records if r["status"] != "ok"),
                 key=lambda r: (r["variant"], str(r["seed"]), r["key"]))
    if not bad:
        return "None: every run finished with status ok.\n"
    out = []
    for r in bad:
        cause = (" (the machine's: a full disk or out of memory; `unet-ablate run ... --retry-failed` "
                 "runs it again)") if r.get("cause") == "environment" else ""
        out.append(f"- `{r['variant']}` seed {r['seed']} (`{r['key']}`): **{r['status']}**{cause}")
        text = (r["error"] or "no error text recorded").rstrip()
        if r["traceback"] and r["traceback"].strip() not in text:
            text += "\n" + r["traceback"].rstrip()
        lines = text.splitlines()
        if len(lines) > MAX_ERROR_LINES:
            lines = ["..."] + lines[-MAX_ERROR_LINES:]
        out += ["", "  ```text", *(f"  {line}" for line in lines), "  ```", ""]
    return "\n".join(out).rstrip() + "\n"


def missing_markdown(missing, command: str) -> str:
    """The planned runs without a record, and the command that completes them."""
    if not missing:
        return "None: every planned run has a record.\n"
    runs = "\n".join(f"- `{r.variant}` seed {r.seed}{'' if r.fold is None else f' fold {r.fold}'} (`{r.key}`)"
                     for r in missing)
    how = (f"Complete them (runs with a record are not done again):\n\n```sh\n{command}\n```\n"
           if command else "Run the sweep again with the command that started it; runs with a "
                           "record are not done again.\n")
    return (f"{len(missing)} planned run(s) of sweep.json have no record, so their rows count "
            f"fewer seeds than planned:\n\n{runs}\n\n{how}")


def figures_markdown(figures: list[FigureResult]) -> str:
    out = []
    for f in figures:
        out.append(f"### {f.title}\n")
        png = next((p for p in f.files if p.suffix == ".png"), None)
        pdf = next((p for p in f.files if p.suffix == ".pdf"), None)
        if png is not None:
            out.append(f"![{f.title}]({png.name})\n")
            out.append(f"{f.caption} ([PDF]({pdf.name}))\n" if pdf else f"{f.caption}\n")
        if f.note:
            out.append(f"*Note: {f.note}.*\n")
    return "\n".join(out)


def conclusions_markdown(summary) -> str:
    """What the table concludes, in words: the rows found different, those shown
    equivalent, and for each inconclusive row how many seeds would settle it."""
    if summary is None or "verdict" not in summary or not summary["verdict"].astype(bool).any():
        return ""
    info = metric_info(summary["metric"].iloc[0])
    margin = margin_of(summary)

    def name(r) -> str:
        return f"`{r['variant']}`" + (f" {r['form']}" if r["form"] != "mean" else "")

    def delta(r) -> str:
        return f"{r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]".replace("-", "−")

    lines = []
    for label, test in (("Different", lambda v: v == "different"),
                        ("Equivalent", lambda v: v.startswith("equivalent"))):
        rows = [r for _, r in summary.iterrows() if test(r["verdict"])]
        if rows:
            lines.append(f"- **{label}** (Δ{info.label} [interval]): "
                         + "; ".join(f"{name(r)} {delta(r)}" + (" (negligible)" if "negligible" in r["verdict"]
                                                                 else "") for r in rows) + ".")
    for _, r in summary.iterrows():
        if r["verdict"] == "inconclusive":
            n = r["seeds_needed"]
            more = (f"about {int(n)} seeds would settle it" if pd.notna(n)
                    else "more than 100 seeds would be needed")
            lines.append(f"- **Inconclusive**: {name(r)} {delta(r)}, MDE {r['mde']:.3f} with {int(r['n_seeds'])} "
                         f"seeds; at this Δ and variance {more}.")
    return (f"At the margin ±{margin:g} ({info.label}; `[report] margin`), with the family's "
            f"intervals:\n\n" + "\n".join(lines) + "\n")


def write_index(out_dir: Path, *, sweep_name: str, results_dir: str, n_records: int,
                methods: str, table_md: str, figures: list[FigureResult],
                records: list[dict], notes: list[str], missing=None, command: str = "",
                conclusions: str = "", effects: str = "") -> Path:
    """Write ``index.md`` into ``out_dir`` and return its path."""
    parts = [
        f"# Ablation report: {sweep_name}\n",
        f"Built from the {n_records} run records in `{results_dir}` by `unet-ablate report` "
        f"(no training). Files: [table.md](table.md), [table.tex](table.tex), "
        f"[table.csv](table.csv) (summary), [runs.csv](runs.csv) (one row per run and form).\n",
        *([f"**{mixed}**\n"] if (mixed := mixed_text(records)) else []),
        *(["## Conclusions\n", conclusions] if conclusions else []),
        *(["## Missing runs\n", missing_markdown(missing, command)] if missing else []),
        "## Methods\n",
        methods + "\n",
        "## Results\n",
        table_md,
        *(["## Factorial effects\n", effects] if effects else []),
        "## Figures\n",
        figures_markdown(figures),
        "## Failed and diverged runs\n",
        failures_markdown(records),
    ]
    if notes:
        parts += ["## Notes\n", "\n".join(f"- {n}" for n in notes) + "\n"]
    path = Path(out_dir) / "index.md"
    write_text_atomic(path, "\n".join(parts))
    return path
