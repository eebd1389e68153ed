"""Named training recipes: the seeds' own, read from their code (``../shared/seeds/``), as
protocol fields a variant can take whole (``[variants.explicit] "x" = { arch = "seed001",
recipe = "seed001" }``) and ``unet-ablate list`` shows.

A recipe names only what its seed's code fixes; every other field is the sweep's
``[protocol]``. Epochs over the seed's own data set have no meaning on another data set, so
the budget stays the sweep's ``steps``; batch sizes are the seed's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Recipe:
    fields: dict[str, Any]
    source: str                 # where in the seed it comes from
    mapped: str = ""            # what could not be reproduced exactly, and how it was mapped


RECIPES = {
    "seed001": Recipe(
        {"optimizer": "rmsprop", "lr": 1e-5, "weight_decay": 1e-8, "momentum": 0.9, "loss": "bce",
         "schedule": "constant", "batch_size": 1, "select": "train_loss"},
        "seed 001, train_net: RMSprop(lr=1e-5, weight_decay=1e-8, momentum=0.9), BCEWithLogitsLoss, "
        "batch_size=1, a fixed rate, and the weights of the lowest training loss kept",
        "40 epochs become the sweep's steps; the lowest training loss is taken over the mean loss "
        "between validation points, not per batch"),
    "seed002": Recipe(
        {"loss": "ce", "select": "iou"},
        "seed 002: cross-entropy on VOC-style classes, judged by mIoU",
        "its optimizer and rate are not in the document: the sweep's; its Dice and focal losses "
        "are named but not used in its code"),
    "seed004": Recipe(
        {"optimizer": "adam", "lr": 1e-4, "loss": "bce", "schedule": "constant", "batch_size": 4},
        "seed 004: Adam(lr=1e-4), BCEWithLogitsLoss, batch_size=4, a fixed rate",
        "20 epochs become the sweep's steps; it keeps the last weights, here the best validation "
        "score's (as every recipe without a selection rule of its own)"),
}
"""Seeds 000 and 003 hold no training code (their networks only), so they name no recipe."""


def recipe(name: object, where: str) -> dict[str, Any]:
    """The protocol fields of the named recipe; an unknown name is one ValueError naming it."""
    if not isinstance(name, str) or name not in RECIPES:
        raise ValueError(f"{where}: recipe {name!r}: expected one of {', '.join(RECIPES)}")
    return dict(RECIPES[name].fields)
