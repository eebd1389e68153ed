"""The qualitative figure: up to 3 test images (the baseline's hardest, median and easiest),
each as input, ground truth and every variant's prediction from its lowest ok seed."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.colors import ListedColormap

from ..metrics import IGNORE, per_image_dice
from ..store.records import counts_array, image_ids, ok_forms, predicted_maps
from .labels import natural_key
from .style import LABEL_PT, ONE_COL, TWO_COL, FigureResult, new_figure, save_figure
from .summary import per_image_dice_by_id


def _class_cmap(k: int) -> ListedColormap:
    """Class 0 black, foreground white (binary) or colour-blind colours, index k = ignore (grey)."""
    fg = [(1.0, 1.0, 1.0)] if k <= 2 else list(sns.color_palette("colorblind", k - 1))
    return ListedColormap([(0.0, 0.0, 0.0)] + fg[:max(k - 1, 1)] + [(0.5, 0.5, 0.5)])


def _show_map(ax, m: np.ndarray, k: int) -> None:
    m = np.where(m == IGNORE, k, np.minimum(m, k - 1))
    ax.imshow(m, cmap=_class_cmap(k), vmin=-0.5, vmax=k + 0.5, interpolation="nearest")


def _show_image(ax, image: np.ndarray) -> None:
    image = np.asarray(image, dtype=float)
    if image.ndim == 3 and image.shape[0] >= 3:
        ax.imshow(np.clip(np.moveaxis(image[:3], 0, -1), 0, 1), interpolation="nearest")
    else:
        ax.imshow(image.reshape(-1, *image.shape[-2:])[0], cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")


def _short_label(text: str, narrow: bool) -> str:
    """Break a label after '=', ',' and '/' (then at 14 characters) so that narrow panels'
    titles do not run into each other."""
    if narrow:
        for sep in ("=", ",", "/"):
            text = text.replace(sep, sep + "\n")
    return "\n".join(line for part in text.split("\n") for line in textwrap.wrap(part, 14) or [part])


def _picks(records: list[dict], order: list[str]) -> dict:
    """variant -> (record, mean form) of its lowest ok seed with stored predictions (k-fold:
    of its lowest fold first, so that every variant shows the same test images)."""
    picks = {}
    for v in order:
        found = sorted(((r, f) for r, f in ok_forms(records, v) if f["predictions"]["ids"]),
                       key=lambda rf: (rf[0]["fold"] or 0, natural_key(rf[0]["seed"]), rf[0]["key"]))
        if found:
            picks[v] = found[0]
    return picks


def _frame(ax) -> None:
    """No ticks, and a thin frame, so that an all-white map shows."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_linewidth(0.4)
        spine.set_color("0.5")


def _panel(ax, name: str, image_id: str, truth_of: dict, truth: bool, preds: dict, picks: dict, k: int) -> None:
    """One panel: the input, the ground truth, or a variant's prediction with its Dice."""
    if name == "Input" and truth:
        _show_image(ax, truth_of[image_id][0])
    elif name == "Ground truth" and truth:
        _show_map(ax, truth_of[image_id][1], k)
    else:
        _show_map(ax, preds[name][image_id], k)
        _, form = picks[name]
        ids = image_ids(form)
        if image_id in ids:
            dice = per_image_dice(counts_array(form)[ids.index(image_id)][None])[0]
            ax.set_xlabel(f"Dice {dice:.2f}", fontsize=LABEL_PT, labelpad=1)


def qualitative(records: list[dict], order: list[str], baseline: str | None, samples: dict,
                out_dir: Path, n_images: int = 3) -> FigureResult:
    """``samples``: data key -> {test image id: (image, reference mask)}, as the results
    store keeps them."""
    res = FigureResult("qualitative")
    picks = _picks(records, order)
    if not picks:
        res.note = "skipped: the records hold no predictions"
        return res
    preds = {v: predicted_maps(f) for v, (_, f) in picks.items()}
    common = set.intersection(*(set(p) for p in preds.values()))
    if not common:
        res.note = "skipped: no test image has a stored prediction from every variant"
        return res
    # A hard, a typical and an easy image by the baseline's per-image Dice (ties: by id).
    ref = per_image_dice_by_id(records, baseline if baseline in picks else next(iter(picks)))
    ranked = sorted(common, key=lambda i: (ref.get(i, np.nan), i))
    chosen = sorted({ranked[0], ranked[len(ranked) // 2], ranked[-1]}, key=ranked.index)[:n_images]
    first_record = next(iter(picks.values()))[0]
    truth_of = samples.get(first_record["data"]["key"], {})
    truth = all(i in truth_of for i in chosen)

    k = max(2, first_record["data"]["num_classes"],
            *(int(m[m != IGNORE].max(initial=0)) + 1 for p in preds.values() for m in p.values()))
    columns = (["Input", "Ground truth"] if truth else []) + list(picks)
    width = ONE_COL if len(columns) <= 3 else TWO_COL
    panel = width / len(columns)
    fig = new_figure(width, len(chosen) * panel + 0.6)
    axes = np.atleast_2d(fig.subplots(len(chosen), len(columns), squeeze=False))
    for row, image_id in enumerate(chosen):
        for col, name in enumerate(columns):
            _frame(axes[row, col])
            if row == 0:
                axes[row, col].set_title(_short_label(name, narrow=len(columns) > 6), fontsize=LABEL_PT)
            _panel(axes[row, col], name, image_id, truth_of, truth, preds, picks, k)
        axes[row, 0].set_ylabel(_short_label(image_id, narrow=True), fontsize=LABEL_PT)
    seeds = ", ".join(f"{v}: seed {r['seed']}" for v, (r, _) in picks.items())
    res.caption = (f"Test images with the lowest, median and highest per-image Dice of the "
                   f"baseline; each prediction is from the variant's lowest ok seed ({seeds}); "
                   f"class 0 black, ignore grey.")
    if not truth:
        res.note = "input and ground truth not shown (the results folder stores no samples of these images)"
        fig.supxlabel("Predictions only: " + res.note, fontsize=LABEL_PT)
    res.files = save_figure(fig, out_dir, res.name)
    return res
