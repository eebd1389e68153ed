"""Claims: which runner is doing which run of a results folder.

Any number of runners may share one results folder: ``--workers`` processes, a second
terminal, cluster jobs. Before a run starts, its runner claims it by creating
``claims/<key>.json`` exclusively (of all the runners that try, exactly one creates it): the
claim is written whole to a private file first and then hard-linked into place, which fails
when the claim exists, as ``O_CREAT | O_EXCL`` does, but never shows a half-written claim (a
runner killed between creating and writing an ``O_EXCL`` file would leave an empty claim
that names no process). Where the file system has no hard links, ``O_EXCL`` is used, and a
claim that is still empty after ``WRITE_GRACE_S`` counts as stale. The claim holds the
runner's host, PID, start time and a random token; its heartbeat is the file's modification
time, which a background thread refreshes with ``os.utime`` every ``HEARTBEAT_S`` seconds.
The claim is removed when the run's record is written, or when the run stops for any reason
(an error, Ctrl-C).

A claim is stale, and another runner takes the run over, when its heartbeat is older than
``STALE_S`` (the runner died, its node went down, its job was killed), by the file's time
or by the observer's own clock since it first saw the claim unchanged (so a claim stamped
in the future by a node whose clock runs ahead ages too), or at once when it was made on
this host by a process that no longer exists (a run killed with ``kill -9``): the claim
stores its process's start time, so a new process that got the same PID is not mistaken
for it. A runner looks again, before it ends, at the runs it found held elsewhere.
Taking over is atomic too: the runners that find one stale claim race for a marker file
named after the stale claim's content (created exclusively, as a claim is), and only the
winner removes it and claims anew, so two runners never both win a stale claim. The marker
names its taker's host and process, and is judged as a claim is: one left by a taker that
died (on this host: at once; elsewhere: after ``STALE_S``) is removed, never taken for a
runner at work. A claim whose content names no runner (a ``pid`` that is not a positive
integer, a ``host`` that is not text: written by hand or corrupted) is stale, with a warning.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from ..store.layout import Layout

log = logging.getLogger("unet_ablate")

HEARTBEAT_S = 30.0   # how often a runner touches the claims it holds
STALE_S = 600.0      # a claim whose heartbeat is older than this is taken over
WRITE_GRACE_S = 5.0  # an empty (unreadable) claim older than this was left by a killed writer
_MODE = 0o666        # the user's umask applies, as for any file they create


def _digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:16]


def _info(data: bytes) -> dict:
    """A claim's content; {} for one that is unreadable (its writer died while writing)."""
    try:
        info = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def malformed(info: dict) -> str | None:
    """What makes a claim's content no claim a runner wrote (a file written by hand or
    corrupted: a ``pid`` that is no positive integer, a ``host`` that is no text), None when
    nothing; such a claim names no runner, so it is stale."""
    pid = info.get("pid")
    if "pid" in info and not (isinstance(pid, int) and not isinstance(pid, bool) and pid > 0):
        return f"pid {json.dumps(pid)[:40]} is not a process id"
    for field in ("host", "pid_started", "pid_ns", "token"):
        if info.get(field) is not None and not isinstance(info[field], str):
            return f"{field} {json.dumps(info[field])[:40]} is not a text"
    return None


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as "<boot id>:<clock ticks after boot>" (Linux), so that
    a new process that got a dead one's PID is told apart from it; None where unknown."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, counted after "(comm)"
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid, started: str | None = None) -> bool:
    """Whether the process ``pid`` lives, and is the one that started at ``started`` (when the
    claim says: a recycled PID is not its holder)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True  # another user's process, or no PID to check: trust the heartbeat
    now = process_start(pid)
    return started is None or now is None or now == started


_SEEN: dict[tuple, float] = {}  # (claim path, mtime, content) -> when this process first saw it (monotonic)


def unchanged_for(path: Path, data: bytes, mtime: float) -> float:
    """Seconds, on this process's own clock, that it has seen the claim at ``path`` exactly
    as it is now (same content and modification time): 0 at the first sight."""
    first = _SEEN.setdefault((str(path), mtime, _digest(data)), time.monotonic())
    return time.monotonic() - first


def is_stale(info: dict, mtime: float, stale_s: float | None = None, unchanged_s: float = 0.0) -> bool:
    """True when a claim (its content and modification time) no longer has a live runner:
    its heartbeat is older than ``stale_s`` by the file's time, or this observer has seen it
    unchanged for that long on its own clock (``unchanged_s``: a claim stamped in the future
    by a node whose clock runs ahead ages too), or its holder on this host (in this PID
    namespace) has ended, or its content names no runner (``malformed``). A takeover
    marker is judged the same way (its content: its taker's host and process)."""
    limit = STALE_S if stale_s is None else stale_s
    age = max(time.time() - mtime, unchanged_s)
    if age > limit or (not info and age > WRITE_GRACE_S) or malformed(info):
        return True
    same_pids = info.get("pid_ns") in (None, pid_namespace())  # (claims written before pid_ns: assumed so)
    return (info.get("host") == socket.gethostname() and "pid" in info and same_pids
            and not _alive(info["pid"], info.get("pid_started")))


def pid_namespace() -> str | None:
    """This process's PID namespace ("pid:[4026531836]"; None where unknown): two containers
    may share a host name, and a PID of the other's is not one to look up here."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


class Claim:
    """A claim this runner holds; its heartbeat runs until ``release`` (or the ``with``
    block ends)."""

    def __init__(self, path: Path, token: str, heartbeat_s: float = HEARTBEAT_S):
        self.path, self.token = path, token
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, args=(heartbeat_s,), daemon=True,
                                      name=f"claim {path.stem}")
        self._beat.start()

    def held(self) -> bool:
        """True while the claim file is still this runner's (not released, not taken over)."""
        try:
            return _info(self.path.read_bytes()).get("token") == self.token
        except OSError:
            return False

    def _heartbeat(self, every: float) -> None:
        while not self._stop.wait(every):
            if not self.held():
                log.warning("claim %s was taken over by another runner (this runner was silent for "
                            "over %.0f s); both finish the run, and its record is written whole", self.path,
                            STALE_S)
                return
            try:
                os.utime(self.path)
            except OSError as e:
                log.warning("claim %s: heartbeat not written (%s)", self.path, e.strerror or e)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not threading.current_thread():
            self._beat.join()
        if self.held():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _owner() -> dict:
    """This process, as a claim or a takeover marker names its holder."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": process_start(os.getpid()),
            "pid_ns": pid_namespace()}


def _looked_at(path: Path, stale_s: float | None) -> tuple[bytes, bool] | None:
    """(content, stale) of the claim or takeover marker at ``path`` as this observer sees it
    now (``is_stale``, aged on the file's time and on its own clock); None when it is gone."""
    try:
        data, mtime = path.read_bytes(), path.stat().st_mtime
    except FileNotFoundError:
        return None
    return data, is_stale(_info(data), mtime, stale_s, unchanged_for(path, data, mtime))


def _clear_dead_marker(marker: Path, stale_s: float | None) -> None:
    """Remove the takeover marker at ``marker`` when its taker is gone: it is judged as a
    claim is (its taker's process on this host, an empty marker after ``WRITE_GRACE_S``), so
    a runner that died while taking over blocks nobody (nor counts as running elsewhere)."""
    if (seen := _looked_at(marker, stale_s)) is not None and seen[1]:
        log.info("removing the takeover marker %s: its runner is gone", marker.name)
        marker.unlink(missing_ok=True)


def _take_over(path: Path, stale_s: float | None) -> bool:
    """Remove the claim at ``path`` when it is stale, as the one runner that does so; True
    when the caller may now try to claim (also when the claim was released meanwhile)."""
    if (seen := _looked_at(path, stale_s)) is None:
        return True
    data, stale = seen
    if not stale:
        return False
    marker = path.with_name(f".{path.name}.{_digest(data)}.takeover")
    _clear_dead_marker(marker, stale_s)
    try:  # the marker names its taker, written whole (as a claim is)
        _create(marker, json.dumps(_owner()).encode(), uuid.uuid4().hex)
    except FileExistsError:
        return False  # another runner is taking this claim over
    try:
        try:
            if _digest(path.read_bytes()) != _digest(data):
                return False  # claimed anew meanwhile (by the runner that took it over)
            info = _info(data)
            log.info("taking over run %s from %s (pid %s): its claim is stale%s", path.stem,
                     info.get("host", "?"), info.get("pid", "?"),
                     f" ({why})" if (why := malformed(info)) else "")
            path.unlink()
        except FileNotFoundError:
            pass
        return True
    finally:
        marker.unlink(missing_ok=True)


def claim(results: Path, key: str, stale_s: float | None = None,
          heartbeat_s: float = HEARTBEAT_S) -> Claim | None:
    """Claim run ``key`` of ``results`` for this runner: the held ``Claim``, or None when a
    live runner holds it. A stale claim is taken over."""
    path = Layout(results).claim(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    info = {**_owner(), "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "job": os.environ.get("SLURM_JOB_ID"), "token": token}
    for _ in range(3):  # a claim released or taken over meanwhile: try again
        try:
            _create(path, json.dumps(info).encode(), token)
        except FileExistsError:
            if not _take_over(path, stale_s):
                return None
            continue
        return Claim(path, token, heartbeat_s)
    return None


def _create(path: Path, data: bytes, token: str) -> None:
    """Create ``path`` holding ``data``, whole, or raise FileExistsError when it exists."""
    private = path.with_name(f".{path.name}.{token}.claiming")
    _write_new(private, data)
    try:
        try:
            os.link(private, path)  # atomic and exclusive: FileExistsError when claimed
            return
        except FileExistsError:
            raise
        except OSError:  # no hard links here: O_EXCL (an empty claim then ages out, above)
            pass
        _write_new(path, data)
    finally:
        private.unlink(missing_ok=True)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` with ``O_EXCL`` (FileExistsError when it exists) and write ``data``,
    synced; on a failure while writing the file is removed."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def live_claim(results: Path, key: str) -> dict | None:
    """The claim of run ``key`` when a live runner holds it: its content with ``age_s``, the
    seconds since its last heartbeat; None otherwise."""
    path = Layout(results).claim(key)
    try:
        data, mtime = path.read_bytes(), path.stat().st_mtime
    except FileNotFoundError:
        return None
    info = _info(data)
    if (why := malformed(info)) is not None:
        log.warning("%s: not a claim a runner wrote (%s); counted as stale, its run as not running", path, why)
        return None
    if is_stale(info, mtime, unchanged_s=unchanged_for(path, data, mtime)):
        return None
    return {**info, "age_s": max(0.0, time.time() - mtime)}


def is_held(results: Path, key: str) -> bool:
    """True when a live runner holds the claim of run ``key`` (a claim that is not stale)."""
    return live_claim(results, key) is not None
