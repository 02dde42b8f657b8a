"""Local record of runs (config, metric history, final figures, status) in SQLite.

The app's comparison page and the CLI read and write the same database, by default
``~/.cache/cprune/runs.sqlite`` (``$CPRUNE_HOME/runs.sqlite`` when CPRUNE_HOME is set). Every
write is one transaction, so a process killed midway leaves the previous, consistent state.
A run whose process died while it was "running" is marked "interrupted" the next time a store
is opened on the same machine.

A store file that is not a readable SQLite database (corrupt, truncated) is kept beside it as
``<name>.damaged-<time>`` and a fresh store started (``recovered_from`` says so); one that cannot
be created or written, or is not a file, raises StoreError naming the problem (each front end adds
what its user can do: the command line its flags, the app who can set CPRUNE_HOME).

Each run records who launched it (``owner``: ``access.Access.owner``, None for the command line) and,
for experiments, a ``run_key`` (a hash of its whole configuration) so a grid can resume.
"""
from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .access import COMMAND_LINE, Access
from .errors import StoreError
from .paths import store_path, unknown_home, user_path
from .schema import EventKind, FinetuneConfig, MetricEvent, RunStatus, RunSummary

__all__ = ["RunStore", "RunRecord", "Recording", "record"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    ended REAL,
    status TEXT NOT NULL,
    message TEXT,
    config TEXT NOT NULL,
    final TEXT,
    model_dir TEXT,
    host TEXT,
    pid INTEGER,
    owner TEXT,
    run_key TEXT
);
CREATE TABLE IF NOT EXISTS events (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""
ADDED_COLUMNS = (("owner", "TEXT"), ("run_key", "TEXT"))  # added to stores of earlier versions on open
# Stores this process found sound, as (path, inode, size, modified): the check reads the whole file, and a
# page opens the store at every rerun; any write or replacement of the file brings it back.
_CHECKED: set[tuple] = set()
# Columns of list_runs(): flattened from config and final figures.
CONFIG_COLUMNS = ("dataset", "backbone", "mode", "criterion", "keep", "tau", "epochs", "seed", "image_size")
FINAL_COLUMNS = ("test_acc", "val_acc", "params", "macs", "latency_ms", "duration_s")


def _json(value) -> str:
    # NaN/inf are not JSON: store them as null so every reader can parse the record.
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(value))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class _Damaged(Exception):
    """The file is there but is not a readable run store."""


class RunStore:
    """SQLite store of runs (``paths.store_path()`` when ``path`` is None).

    Safe to open from several processes (WAL journal, busy timeout). A damaged file is set aside and a
    fresh store opened in its place (``recovered_from``, ``recovery_note``); StoreError when the path
    cannot be used at all (a folder, a device or other special file, an unwritable place). Opening marks as
    "interrupted" the running runs of processes that are gone.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = user_path(path) if path is not None else store_path()
        self.recovered_from: Path | None = None  # where a damaged store was set aside
        try:
            self._open()
        except _Damaged as damage:
            self.recovered_from = self._set_aside(damage)
            self._open()
        self.mark_interrupted()

    @property
    def recovery_note(self) -> str | None:
        """A page's sentence when a damaged store was set aside (its file name only), else None."""
        if self.recovered_from is None:
            return None
        return f"The run store was damaged: it is kept as {self.recovered_from.name} and a fresh one was started."

    def _open(self) -> None:
        if unknown_home(self.path):
            raise StoreError(f"The run store {self.path} cannot be created (no home directory is known for "
                             f"{unknown_home(self.path)}).")
        if self.path.is_dir():
            raise StoreError(f"The run store {self.path} is a folder, not a file.")
        if self.path.exists() and not self.path.is_file():  # SQLite would write its journal beside a device
            raise StoreError(f"The run store {self.path} is not a regular file (a device, a pipe or a socket).")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"The run store's folder {self.path.parent} cannot be created ({error.strerror}).") \
                from error
        if self._identity() not in _CHECKED:
            self._check()
        with self._connect() as db:
            db.executescript(SCHEMA)
            present = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
            for column, kind in ADDED_COLUMNS:
                if column not in present:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
        _CHECKED.add(self._identity())

    def _identity(self) -> tuple:
        try:
            stat = self.path.stat()
        except OSError:
            return (str(self.path),)
        return str(self.path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns

    def _check(self) -> None:
        """_Damaged unless SQLite's quick_check finds the file sound."""
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as db:
                check = db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as error:
            if "not a database" in str(error) or "malformed" in str(error):
                raise _Damaged(str(error)) from error
            raise self._unusable(error) from error
        if check != "ok":
            raise _Damaged(check)

    def _set_aside(self, damage: _Damaged) -> Path:
        """Rename a damaged store (and its journal files) out of the way; nothing is deleted."""
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    part.rename(f"{aside}{suffix}")
        except OSError as error:
            raise StoreError(f"The run store {self.path} is damaged ({damage}) and cannot be moved aside "
                             f"({error.strerror}).") from error
        return aside

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=30)
        except sqlite3.Error as error:
            raise self._unusable(error) from error
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            with db:  # one transaction: committed on success, rolled back on any exception
                yield db
        except sqlite3.Error as error:
            raise self._unusable(error) from error
        finally:
            db.close()

    def _unusable(self, error: sqlite3.Error) -> StoreError:
        return StoreError(f"The run store {self.path} cannot be used ({error}).")

    def create_run(self, config: dict, kind: str = "finetune", owner: str | None = None,
                   run_key: str | None = None) -> int:
        """Record a new run as "running" and return its id."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO runs (kind, created, status, config, host, pid, owner, run_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, time.time(), RunStatus.RUNNING, _json(config), socket.gethostname(), os.getpid(), owner,
                 run_key),
            )
            return int(cursor.lastrowid)

    def append_events(self, run_id: int, events: Iterable[MetricEvent]) -> None:
        """Append events to a run's history (all or none)."""
        rows = [event.to_dict() for event in events]
        with self._connect() as db:
            start = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM events WHERE run_id = ?",
                               (run_id,)).fetchone()[0]
            db.executemany("INSERT INTO events (run_id, seq, event) VALUES (?, ?, ?)",
                           [(run_id, start + i, _json(row)) for i, row in enumerate(rows)])

    def finish_run(self, run_id: int, status: RunStatus, summary: RunSummary | None = None,
                   model_dir: str | Path | None = None, message: str | None = None) -> None:
        """Set a run's end status and its summary (the message is the summary's unless given)."""
        message = message if message is not None else (summary.message if summary else None)
        with self._connect() as db:
            db.execute("UPDATE runs SET status = ?, ended = ?, final = ?, message = ?, "
                       "model_dir = COALESCE(?, model_dir) WHERE id = ?",
                       (status, time.time(), _json(summary.to_dict()) if summary is not None else None, message,
                        str(model_dir) if model_dir else None, run_id))

    def record_run(self, config: dict, summary: RunSummary, history: Iterable[MetricEvent], *,
                   kind: str = "finetune", owner: str | None = None, run_key: str | None = None,
                   host: str | None = None) -> int:
        """Record a run that has already ended, with its whole history, in one transaction (all or
        nothing: a process killed midway leaves no trace of it). ``host``: the machine that ran it
        (default this one). Returns its id."""
        ended = time.time()
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO runs (kind, created, ended, status, message, config, final, host, owner, run_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, ended - summary.duration_s, ended, summary.status, summary.message, _json(config),
                 _json(summary.to_dict()), host or socket.gethostname(), owner, run_key))
            run_id = int(cursor.lastrowid)
            db.executemany("INSERT INTO events (run_id, seq, event) VALUES (?, ?, ?)",
                           [(run_id, seq, _json(event.to_dict())) for seq, event in enumerate(history)])
        return run_id

    def finished_runs(self, run_keys: Iterable[str]) -> dict[str, RunSummary]:
        """The summary of the newest finished run of each of ``run_keys`` that has one (keys of runs that
        failed, stopped or never ran are absent)."""
        keys = list(dict.fromkeys(run_keys))
        found: dict[str, RunSummary] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):  # SQLite bounds the number of parameters per query
                chunk = keys[start:start + 500]
                rows = db.execute(f"SELECT run_key, final FROM runs WHERE status = ? AND final IS NOT NULL "
                                  f"AND run_key IN ({', '.join('?' * len(chunk))}) ORDER BY id",
                                  (RunStatus.FINISHED, *chunk)).fetchall()
                found.update({row["run_key"]: RunSummary.from_dict(json.loads(row["final"])) for row in rows})
        return found

    def set_model_dir(self, run_id: int, model_dir: str | Path) -> None:
        with self._connect() as db:
            db.execute("UPDATE runs SET model_dir = ? WHERE id = ?", (str(model_dir), run_id))

    def mark_interrupted(self) -> int:
        """Mark "running" rows of dead processes on this host as "interrupted"; returns how many."""
        host = socket.gethostname()
        with self._connect() as db:
            rows = db.execute("SELECT id, pid FROM runs WHERE status = ? AND host = ?",
                              (RunStatus.RUNNING, host)).fetchall()
            dead = [row["id"] for row in rows if row["pid"] is None or not _pid_alive(row["pid"])]
            db.executemany("UPDATE runs SET status = ?, ended = ?, "
                           "message = 'The process running it ended before it finished.' WHERE id = ?",
                           [(RunStatus.INTERRUPTED, time.time(), run_id) for run_id in dead])
        return len(dead)

    def list_runs(self, access: Access = COMMAND_LINE) -> list[dict]:
        """One flat dict per run that ``access`` sees (``Access.sees``: every run for the command line; an
        owner's own and the command line's for an owner), newest first (see CONFIG_COLUMNS and FINAL_COLUMNS)."""
        with self._connect() as db:
            if access.owner is None:
                rows = db.execute("SELECT * FROM runs ORDER BY id DESC").fetchall()
            else:  # Access.sees, in SQL
                rows = db.execute("SELECT * FROM runs WHERE owner IS NULL OR owner = ? ORDER BY id DESC",
                                  (access.owner,)).fetchall()
        return [self._flat(row) for row in rows]

    def get_run(self, run_id: int) -> RunRecord | None:
        """One run with its configuration, summary and event history (None when there is no such run)."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            events = db.execute("SELECT event FROM events WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
        return RunRecord(
            id=row["id"], kind=row["kind"], created=row["created"], ended=row["ended"], status=RunStatus(row["status"]),
            message=row["message"], model_dir=row["model_dir"], owner=row["owner"], run_key=row["run_key"],
            config=json.loads(row["config"]),
            summary=RunSummary.from_dict(json.loads(row["final"])) if row["final"] else None,
            history=[MetricEvent.from_dict(json.loads(e["event"])) for e in events])

    def delete_run(self, run_id: int) -> bool:
        with self._connect() as db:
            db.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
            return db.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount > 0

    @staticmethod
    def _flat(row: sqlite3.Row) -> dict:
        config = json.loads(row["config"])
        final = json.loads(row["final"]) if row["final"] else {}
        flat = {"id": row["id"], "kind": row["kind"], "created": row["created"], "ended": row["ended"],
                "status": row["status"], "message": row["message"], "model_dir": row["model_dir"],
                "owner": row["owner"]}
        flat.update({name: config.get(name) for name in CONFIG_COLUMNS})
        flat.update({name: final.get(name) for name in FINAL_COLUMNS})
        if flat["duration_s"] is None and row["ended"]:
            flat["duration_s"] = row["ended"] - row["created"]
        return flat


@dataclass(frozen=True)
class RunRecord:
    """A stored run, as ``RunStore.get_run`` reads it back (``history`` in the order it was recorded)."""

    id: int
    kind: str  # "finetune" (CLI, app) or "experiment"
    created: float
    ended: float | None
    status: RunStatus
    message: str | None
    model_dir: str | None
    owner: str | None  # the app session that launched it; None: the command line
    run_key: str | None  # an experiment's hash of the whole configuration
    config: dict  # FinetuneConfig.to_dict() of the version that ran it
    summary: RunSummary | None
    history: list[MetricEvent]


class Recording:
    """Iterate to pass ``events`` through while recording them; ``run_id`` is known at once.

    The run ends as the end event says; an exception ends it "failed" (and is re-raised); a
    consumer that stops iterating early (closing the generator) ends it "interrupted". A run whose
    end says it was refused (``RunSummary.refused``: its dataset, checkpoint or settings could not be
    used, before a step) is deleted again, and ``run_id`` becomes None: a refused command records nothing.
    """

    def __init__(self, store: RunStore, config: FinetuneConfig, events: Iterable[MetricEvent],
                 kind: str = "finetune", owner: str | None = None):
        self.store = store
        self.events = events
        self.run_id = store.create_run(config.to_dict(), kind, owner)
        self.summary: RunSummary | None = None

    def __iter__(self) -> Iterator[MetricEvent]:
        status, message = RunStatus.INTERRUPTED, None
        try:
            for event in self.events:
                self.store.append_events(self.run_id, [event])
                if event.kind == EventKind.END:
                    self.summary = event.final
                    status = self.summary.status
                yield event
        except Exception as error:  # recorded, then re-raised for the caller to report
            status, message = RunStatus.FAILED, f"{type(error).__name__}: {error}"
            raise
        finally:
            if self.summary is not None and self.summary.refused:
                self.store.delete_run(self.run_id)
                self.run_id = None
            else:
                self.store.finish_run(self.run_id, status, self.summary, message=message)


def record(store: RunStore, config: FinetuneConfig, events: Iterable[MetricEvent],
           kind: str = "finetune", owner: str | None = None) -> Recording:
    """Wrap an event stream so that iterating it records the run in ``store``."""
    return Recording(store, config, events, kind, owner)
