"""The tables: the summary as Markdown, LaTeX (booktabs) and CSV, and the tidy runs CSV.

``table.md`` and ``table.tex`` carry the caption; the CSV files stay plain machine-readable
tables (the caption is written next to them as ``caption.txt``). One display table is built
once and rendered to both text formats, so they always agree.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..fileio import write_text_atomic
from ..metrics import metric as metric_info
from ..store.runs_table import runs_frame
from .stats import ALPHA
from .summary import SUMMARY_COLUMNS, margin_of

DASH = "—"
TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
       "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
       "±": r"$\pm$", "—": "--", "†": r"$^\dagger$", "Δ": r"$\Delta$", "×": r"$\times$",
       "<": r"$<$", ">": r"$>$", "−": r"$-$"}
TEX_TABLE = str.maketrans(TEX)


def _ok(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _num(x, fmt: str) -> str:
    return format(x, fmt) if _ok(x) else DASH


def _mean_std(mean, std, digits: int = 3) -> str:
    if not _ok(mean):
        return DASH
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if _ok(std) else "")


def _rate(x) -> str:
    if not _ok(x):
        return DASH
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def _size(x) -> str:
    """Parameters / GMACs: about three significant digits, tiny values included."""
    if not _ok(x):
        return DASH
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.{2 if x < 10 else 1}f}"
    return f"{x:#.2g}" if x > 0 else "0"


def format_p(p) -> str:
    """A p-value as every table and figure prints it."""
    if not _ok(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p) -> str:
    """"p = 0.135" or "p < 0.001", for running text."""
    text = format_p(p)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


def _delta(row) -> str:
    if row["is_baseline"]:
        return "(baseline)"
    if not _ok(row["delta"]):
        return DASH
    ci = (f" [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
          if _ok(row["ci_low"]) and _ok(row["ci_high"]) else "")
    mark = "‡" if row["disagree"] else ""
    return f"{row['delta']:+.3f}{ci}{mark}".replace("-", "−")  # a true minus sign


def _verdict(row) -> str:
    """The row's verdict; for an inconclusive one, the seeds that would settle it."""
    if not row["verdict"]:
        return DASH
    if row["verdict"] != "inconclusive":
        return row["verdict"]
    n = row["seeds_needed"]
    return f"inconclusive (~{int(n)} seeds)" if _ok(n) else "inconclusive (>100 seeds)"


def _p(row) -> str:
    """The Holm-adjusted p, or why the row has none."""
    if not _ok(row["reference"]):  # the baseline (or no baseline): nothing to compare
        return DASH
    return format_p(row["p_holm"]) if _ok(row["p_holm"]) else (row["test_note"] or DASH)


def _sample(row) -> str:
    """"3 × 12": the seeds and test images behind the row's Δ (its own, for a reference)."""
    if not _ok(row["reference"]):  # the baseline (or no baseline): nothing to compare
        return f"{row['n_seeds']} × {_num(row['n_images'], '.0f')}" if row["n_seeds"] else DASH
    if not row["n_pairs"]:
        return DASH
    dropped = f" ({row['n_dropped']} dropped)" if row["n_dropped"] else ""
    return f"{row['n_seeds']} × {row['n_pairs']}{dropped}"


def display_table(summary: pd.DataFrame) -> tuple[list[str], list[str], list[list[str]]]:
    """(headers, alignments "l"/"r", rows of text cells) of the summary.

    Optional columns (form, factor, family, fail = 0 sensitivity, FPR on empty references,
    training MFU, peak memory) appear only when some row has a value for them."""
    has = {
        "form": (summary["form"] != "mean").any(),
        "factor": summary["factor"].map(lambda f: _ok(f) and f != "baseline").any(),
        "family": summary["reference"].map(_ok).any(),
        "fail0": (summary["n_failed"] + summary["n_diverged"]).gt(0).any(),
        "fpr": summary["fpr_empty_mean"].map(_ok).any(),
        "mem": summary["peak_mem_mb"].map(_ok).any(),
        "mfu": summary["mfu"].map(_ok).any(),
    }
    headline = metric_info(summary["metric"].iloc[0] if len(summary) else "dice")
    better = "higher" if headline.higher_is_better else "lower"
    shown = [c[:-len("_mean")] for c in summary.columns  # the metrics summary_table adds
             if c.endswith("_mean") and c not in SUMMARY_COLUMNS]
    columns = [
        ("Variant", "l", None, lambda r: r["variant"] + ("†" if r["verdict"] == "different" else "")),
        ("Form", "l", "form", lambda r: str(r["form"])),
        ("Factor", "l", "factor", lambda r: str(r["factor"]) if _ok(r["factor"]) else DASH),
        ("Family", "l", "family", lambda r: str(r["family"])),
        ("Runs", "l", None, lambda r: r["status"]),
        ("Seeds × images", "r", None, _sample),
        ("Dice", "r", None, lambda r: _mean_std(r["dice_mean"], r["dice_std"])),
        (f"{headline.label} (fail = 0)", "r", "fail0", lambda r: _mean_std(r["fail0_mean"], r["fail0_std"])),
        ("IoU", "r", None, lambda r: _mean_std(r["iou_mean"], r["iou_std"])),
        ("Dice (global)", "r", None, lambda r: _mean_std(r["dice_global_mean"], r["dice_global_std"])),
        *((metric_info(m).label, "r", None, lambda r, m=m: _mean_std(r[f"{m}_mean"], r[f"{m}_std"]))
          for m in shown),
        ("FPR empty", "r", "fpr", lambda r: _num(r["fpr_empty_mean"], ".3f")),
        (f"Δ{headline.label} ({better} is better) [adj. CI]", "r", None, _delta),
        ("Verdict", "l", "family", _verdict),
        ("MDE", "r", "family", lambda r: _num(r["mde"], ".3f")),
        ("p (Holm)", "r", None, _p),
        ("Params (M)", "r", None, lambda r: _size(r["params_m"])),
        ("GMACs", "r", None, lambda r: _size(r["gmacs"])),
        ("Infer (img/s)", "r", None, lambda r: _rate(r["infer_img_s"])),
        ("Latency b1 (ms)", "r", None, lambda r: _num(r["latency_ms"], ".2f")),
        ("Train (img/s)", "r", None, lambda r: _rate(r["train_img_s"])),
        ("Train MFU", "r", "mfu", lambda r: f"{100 * r['mfu']:.1f}%" if _ok(r["mfu"]) else DASH),
        ("Peak mem (MB)", "r", "mem", lambda r: _num(r["peak_mem_mb"], ",.0f")),
    ]
    columns = [c for c in columns if c[2] is None or has[c[2]]]
    rows = [[cell(r) for *_, cell in columns] for _, r in summary.iterrows()]
    return [c[0] for c in columns], [c[1] for c in columns], rows


def footnote(summary: pd.DataFrame) -> str:
    n, tested = int((summary["verdict"] == "different").sum()), int(summary["p_holm"].notna().sum())
    margin = margin_of(summary)
    counts = summary["verdict"].value_counts()
    verdicts = ", ".join(f"{counts[v]} {v}" for v in ("different", "equivalent", "equivalent (negligible)",
                                                     "inconclusive") if v in counts)
    text = (f"† different: Δ significant at {ALPHA:g} after Holm correction within its family, "
            f"its interval not within the margin ({n} of {tested} tested rows). Verdicts at the "
            f"margin ±{margin:g}: different (†), equivalent (the whole interval within ±{margin:g}), "
            f"inconclusive (neither; the seeds that would settle it at the observed Δ and "
            f"variance in brackets){': ' + verdicts if verdicts else ''}. MDE: the |Δ| the test "
            f"finds with 80% power.")
    if summary["disagree"].any():
        text += (" ‡ Holm rejects, but the family's interval holds 0 (Holm steps down, the "
                 "Bonferroni interval does not): inconclusive.")
    if (summary["n_failed"] + summary["n_diverged"]).gt(0).any():
        text += (" (fail = 0): the headline's mean over seeds, a seed with a failed or diverged run "
                 "scoring 0.")
    return text + " — not available."


def markdown_table(headers: list[str], aligns: list[str], rows: list[list[str]], caption: str,
                   note: str) -> str:
    """A Markdown table ("r" columns right-aligned) with its caption above and note below."""
    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---:" if a == "r" else "---" for a in aligns) + "|"
    return "\n".join([f"**Table.** {caption}", "", line(headers), rule, *map(line, rows), "", note, ""])


def latex_table(headers: list[str], aligns: list[str], rows: list[list[str]], caption: str, label: str,
                note: str) -> str:
    """The same table as LaTeX (booktabs, scaled to the text width)."""
    def line(cells):
        return " & ".join(c.translate(TEX_TABLE) for c in cells) + r" \\"

    return "\n".join([
        r"% unet-ablate report table; needs \usepackage{booktabs,graphicx}",
        r"\begin{table*}[t]",
        r"\centering",
        r"\caption{" + caption.translate(TEX_TABLE) + "}",
        r"\label{tab:" + "".join(ch if ch.isalnum() else "-" for ch in label) + "}",
        r"\resizebox{\textwidth}{!}{%",
        r"\begin{tabular}{" + "".join(aligns) + "}",
        r"\toprule",
        line(headers),
        r"\midrule",
        *map(line, rows),
        r"\bottomrule",
        r"\end{tabular}}",
        r"\par\smallskip{\footnotesize " + note.translate(TEX_TABLE) + "}",
        r"\end{table*}",
        "",
    ])


def markdown(summary: pd.DataFrame, caption: str) -> str:
    return markdown_table(*display_table(summary), caption, footnote(summary))


def latex(summary: pd.DataFrame, caption: str, label: str) -> str:
    return latex_table(*display_table(summary), caption, label, footnote(summary))


def write_tables(records: list[dict], summary: pd.DataFrame, caption: str, label: str,
                 out_dir: Path) -> dict[str, Path]:
    """Write table.md, table.tex, table.csv, runs.csv and caption.txt; return their paths."""
    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in
             ("table.md", "table.tex", "table.csv", "runs.csv", "caption.txt")}
    write_text_atomic(paths["table.md"], markdown(summary, caption))
    write_text_atomic(paths["table.tex"], latex(summary, caption, label))
    write_text_atomic(paths["table.csv"], summary.to_csv(index=False, float_format="%.6g",
                                                         lineterminator="\n"))
    write_text_atomic(paths["runs.csv"], runs_frame(records).to_csv(index=False, lineterminator="\n"))
    write_text_atomic(paths["caption.txt"], caption + "\n")
    return paths
