"""Files written whole, and keys from canonical JSON.

``write_atomic`` writes a temporary file beside the target, flushes it to disk and renames
it over the target: a reader, or a rerun after a kill, sees the old file or the new one,
never half of one. ``stable_key`` hashes the canonical JSON of a value (sorted keys, no
spaces), so equal specs always get equal keys.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Callable


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(f)`` on a binary temporary file beside ``path``, then rename it over
    ``path``; on any error the temporary file is removed and the error raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; results are not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()))


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, allow_nan=True))


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def stable_key(obj, length: int) -> str:
    """The first ``length`` hex digits of the SHA-1 of ``obj``'s canonical JSON."""
    return hashlib.sha1(canonical_json(obj).encode()).hexdigest()[:length]
