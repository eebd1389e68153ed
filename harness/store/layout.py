"""The layout of a results folder: the one place that spells its entries.

```
sweep.json                the sweep as planned            (``sweep_plan.SweepPlan``)
runs/<key>.json           one record per run              (``records``)
runs.csv                  one row per run and form        (``runs_table.runs_frame``)
samples/<data key>.npz    test images and masks to draw   (``samples.write_samples``)
claims/<key>.json         who runs what, with a heartbeat (``claims``)
checkpoints/<key>.pt      in-run checkpoints              (``train.fit``, through the runner)
submitit/                 cluster jobs' pickles and logs  (``cluster``)
tensorboard/<data set>/<variant>/seed<k>[-fold<f>]/   event files (``monitor``; --tensorboard)
```

Every name that becomes a path here (a run key, a data key) must be a plain name, so that
nothing a record or a plan says can point outside the folder.
"""
from __future__ import annotations

from pathlib import Path

from ..config import plain_name
from ..fileio import check_folder_path


class Layout:
    """The paths of the results folder at ``root``: its folders and files as attributes,
    and the file of a run (``record``, ``claim``, ``checkpoint``) or a data set
    (``samples``) by key."""

    def __init__(self, root):
        self.root = Path(root)
        self.plan = self.root / "sweep.json"
        self.runs = self.root / "runs"
        self.runs_csv = self.root / "runs.csv"
        self.samples_dir = self.root / "samples"
        self.claims = self.root / "claims"
        self.checkpoints = self.root / "checkpoints"
        self.submitit = self.root / "submitit"
        self.tensorboard_dir = self.root / "tensorboard"

    def record(self, key: str) -> Path:
        return self.runs / f"{plain_name('run key', key, 'a record file')}.json"

    def claim(self, key: str) -> Path:
        return self.claims / f"{plain_name('run key', key, 'a claim file')}.json"

    def checkpoint(self, key: str) -> Path:
        return self.checkpoints / f"{plain_name('run key', key, 'a checkpoint file')}.pt"

    def samples(self, data_key: str) -> Path:
        return self.samples_dir / f"{plain_name('data key', data_key, 'a samples file')}.npz"

    def check(self) -> None:
        """A one-line ValueError, before anything is written, where the root cannot be a
        results folder: it is a file, sits below a file, or holds a file where one of its
        folders belongs (or a folder where one of its files belongs)."""
        check_folder_path(self.root, "a results folder")
        folders = (self.runs, self.samples_dir, self.claims, self.checkpoints, self.submitit, self.tensorboard_dir)
        for path, folder in [(p, True) for p in folders] + [(self.plan, False), (self.runs_csv, False)]:
            if path.exists() and path.is_dir() != folder:
                raise ValueError(f"{path}: is a {'file' if folder else 'folder'}, expected "
                                 f"{'the folder' if folder else 'the file'} a results folder keeps there")
