"""What every figure of a report shares: paper widths, the text sizes and rc style, the
figure names and titles, one colour per variant, and how a figure is made and saved (a
vector PDF with TrueType fonts embedded, and a 300-dpi PNG)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ONE_COL, TWO_COL = 3.3, 7.0
DPI = 300
LABEL_PT = 7
STYLE = {
    "pdf.fonttype": 42, "ps.fonttype": 42,  # TrueType, embedded (no Type 3 fonts)
    "font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7,
    "legend.title_fontsize": 7, "figure.titlesize": 8, "figure.labelsize": 7,
    "axes.linewidth": 0.6, "lines.linewidth": 1.0, "xtick.major.width": 0.6,
    "ytick.major.width": 0.6, "axes.spines.top": False, "axes.spines.right": False,
    "savefig.dpi": DPI, "figure.dpi": 100,
}


FIGURES = {
    "accuracy_cost": "Accuracy vs cost",
    "ablation": "Difference to the baseline",
    "curves": "Validation curves",
    "qualitative": "Qualitative results",
    "deep_supervision": "Deep supervision: inference forms",
    "cd_diagram": "Mean ranks across data sets (critical-difference diagram)",
    "suite_heatmap": "Δ to the baseline on each data set",
    "main_effects": "Factorial main effects",
    "interactions": "Factorial two-factor interactions",
    "half_normal": "Half-normal plot of the factorial effects",
}
"""The figures of a report (a suite's front page adds the last two): file name -> title."""


NOT_DRAWN = "not drawn: `report --no-figures`"


@dataclass
class FigureResult:
    """One figure of the report: its files, or the reason it was skipped."""
    name: str
    caption: str = ""
    files: list[Path] = field(default_factory=list)
    note: str = ""

    @property
    def title(self) -> str:
        return FIGURES[self.name]

    @classmethod
    def skipped(cls, *names: str) -> list["FigureResult"]:
        """The figures ``names``, not drawn on request (``report --no-figures``)."""
        return [cls(name, note=NOT_DRAWN) for name in names]


def palette(variants) -> dict[str, tuple]:
    """One colour per variant, assigned over the SORTED names (stable across figures)."""
    names = sorted({str(v) for v in variants})
    return dict(zip(names, sns.color_palette("colorblind", len(names))))


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def discard_unmade(out_dir: Path, figures: list[FigureResult]) -> None:
    """A figure not drawn this time leaves no file of an earlier build behind."""
    for f in figures:
        if not f.files:
            for suffix in (".pdf", ".png"):
                (out_dir / f"{f.name}{suffix}").unlink(missing_ok=True)


def save_figure(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    pdf, png = out_dir / f"{name}.pdf", out_dir / f"{name}.png"
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None})
    fig.savefig(png, dpi=DPI, bbox_inches="tight")
    return [pdf, png]
