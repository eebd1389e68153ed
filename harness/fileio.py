"""Files written whole, and keys from canonical JSON.

``write_atomic`` writes a temporary file beside the target, flushes it to disk and renames
it over the target: a reader, or a rerun after a kill, sees the old file or the new one,
never half of one. The file gets the user's umask, like any file they create; a write that
fails (a full disk, a read-only folder) raises an ``OSError`` naming the target, and the old
file stays as it was. ``stable_key`` hashes the canonical JSON of a value (sorted keys, no
spaces), so equal specs always get equal keys.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Callable


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(f)`` on a binary temporary file beside ``path``, then rename it over
    ``path``; on any error the temporary file is removed and the error raised (an
    ``OSError`` with ``path`` as its file name)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; results are not
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename != str(path):
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def write_text_atomic(path: Path, text: str) -> bool:
    """Write ``text`` unless the file already holds exactly it (a rerun that changes nothing
    writes nothing, so it also works in a read-only folder); True when written."""
    data = text.encode()
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:
        pass  # unreadable: write it
    write_atomic(path, lambda f: f.write(data))
    return True


def write_json_atomic(path: Path, obj) -> bool:
    return write_text_atomic(path, json.dumps(obj, allow_nan=True))


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def stable_key(obj, length: int) -> str:
    """The first ``length`` hex digits of the SHA-1 of ``obj``'s canonical JSON."""
    return hashlib.sha1(canonical_json(obj).encode()).hexdigest()[:length]


def check_writable(folder: Path) -> None:
    """Make sure files can be written in ``folder`` (before hours of work that would end in a
    write) by creating and removing one in it, or in its nearest parent that exists (so that
    nothing is left behind); an ``OSError`` naming that folder otherwise."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == Path(p.anchor))
    try:
        fd, tmp = tempfile.mkstemp(dir=existing, prefix=".write-check.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(existing)) from e


def check_folder_path(folder: Path, what: str) -> None:
    """A one-line ValueError where ``folder`` cannot become a folder because it, or the
    nearest of its parents that exists, is a file; ``what`` names it ("a results folder")."""
    folder = Path(folder)
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise ValueError(f"{path}: is a file, expected {what}"
                                 + ("" if path == folder else f" to hold {folder}"))
            return
