"""Measured runs (:mod:`app.core.advice.profiles`) kept in one SQLite file under the data dir.

Opened as the chat history is (:mod:`app.core.chat.database`): WAL and a busy timeout, so the GUI
and the CLI can share the file; a ``quick_check`` first, and a damaged file moved aside (never
deleted) for a fresh one. Measurements only make the advice better, so nothing here stops the
advisor: a file that cannot be opened or moved gives a store in memory for this session, a failed
read gives no profiles (logged); only :meth:`ProfileStore.record` raises, so its caller can say the
measurement was not kept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.core import paths
from app.core.advice.profiles import Measured, Predicted, Profile, RunKey, matching
from app.core.errors import ProfileError
from app.core.files import move_aside

log = logging.getLogger(__name__)

DB_FILENAME = "profiles.sqlite"
SCHEMA_VERSION = 3  # PRAGMA user_version
BUSY_TIMEOUT_MS = 5000  # as the chat history: a write takes milliseconds
# A measured run takes a minute or more, so 5,000 is years of use (hundreds of settings for each of
# dozens of models). Measured here: ~700 bytes a row with its indexes (3.5 MB in all), reading
# every row back ~0.1 s, one insert at the bound 0.5 ms.
MAX_PROFILES = 5_000

_KEY = [f.name for f in dataclasses.fields(RunKey)]
_MEASURED = [f.name if f.name != "when" else "measured_at" for f in dataclasses.fields(Measured)]
_REST = ["machine_id", "hardware_class", "llama_cpp", "source", "model_name", "kind", "predicted"]
_COLUMNS = _KEY + _MEASURED + _REST
# Step n turns a version n-1 file into version n; a later version appends a step, never edits one.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE profiles (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            file_id TEXT NOT NULL, quant TEXT NOT NULL, n_ctx INTEGER NOT NULL,
            type_k TEXT NOT NULL, type_v TEXT NOT NULL, n_gpu_layers INTEGER NOT NULL,
            moe_cpu_layers INTEGER NOT NULL, n_threads INTEGER NOT NULL, flash_attn INTEGER NOT NULL,
            outcome TEXT NOT NULL, peak_ram_bytes INTEGER, peak_vram_bytes INTEGER, load_s REAL,
            gen_tok_s REAL, prompt_tok_s REAL, depth INTEGER, measured_at TEXT NOT NULL,
            machine_id TEXT NOT NULL, hardware_class TEXT NOT NULL, llama_cpp TEXT NOT NULL,
            source TEXT NOT NULL, model_name TEXT NOT NULL)""",
        # One row per run: importing the same export twice adds nothing. Its prefix serves find().
        f"""CREATE UNIQUE INDEX profiles_unique ON profiles
            ({", ".join(_KEY)}, machine_id, measured_at, source)""",
        "CREATE INDEX profiles_by_file ON profiles (file_id, measured_at)",
        "CREATE INDEX profiles_by_time ON profiles (measured_at)",
    ),
    2: (  # benchmarks, and the prediction beside each measurement (JSON, profiles.Predicted)
        "ALTER TABLE profiles ADD COLUMN n_prompt INTEGER",
        "ALTER TABLE profiles ADD COLUMN n_gen INTEGER",
        "ALTER TABLE profiles ADD COLUMN reps INTEGER",
        "ALTER TABLE profiles ADD COLUMN kind TEXT NOT NULL DEFAULT 'answer'",
        "ALTER TABLE profiles ADD COLUMN predicted TEXT",
    ),
    3: ("ALTER TABLE profiles ADD COLUMN others_cpu_share REAL",),  # a benchmark on a busy machine
}
_CORRUPTION_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (sqlite3.h)


class _Damaged(Exception):
    """The file is not a sound SQLite database."""


class ProfileStore:
    """Every measured run, in ``profiles.sqlite`` under the data dir unless ``path`` says otherwise.

    One connection behind a lock: any thread may call any method (the GUI's workers and its main
    thread share one store); several stores, in one process or several, may share the file.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else paths.data_dir() / DB_FILENAME
        self._lock = threading.Lock()
        # recovered_from: where a damaged file was moved before a fresh one was made, else None.
        # notice: what to tell the user when that happened or the file could not be opened at all
        # (then this session's profiles live in memory), else None.
        self._conn, self.recovered_from, self.notice = _open(self.path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ProfileStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def record(self, profile: Profile) -> None:
        """Keep one measured run (again: nothing changes); raises ProfileError when it cannot."""
        self.record_many([profile])

    def record_many(self, profiles: Iterable[Profile]) -> int:
        """Keep these runs in one transaction; returns how many were new. The oldest beyond
        MAX_PROFILES are dropped."""
        rows = [_row(p) for p in profiles]
        sql = f"INSERT OR IGNORE INTO profiles ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        try:
            with self._tx(write=True) as conn:
                before = conn.total_changes
                conn.executemany(sql, rows)
                added = conn.total_changes - before
                conn.execute(
                    "DELETE FROM profiles WHERE id IN (SELECT id FROM profiles"
                    " ORDER BY measured_at DESC, id DESC LIMIT -1 OFFSET ?)",
                    (MAX_PROFILES,),  # read at call time: tests lower it
                )
        except sqlite3.ProgrammingError:
            raise  # our bug (e.g. a closed store), not the user's file
        except sqlite3.DatabaseError as exc:
            raise ProfileError(
                f"The measurement could not be kept ({exc}).",
                hint=f"Check that the disk is not full and {self.path} is writable.",
            ) from exc
        return added

    def find(self, key: RunKey, *, machine_id: str, hardware_class: str | None = None) -> list[Profile]:
        """Runs of exactly ``key`` that count here (:func:`profiles.matching`), newest first."""
        where = " AND ".join(f"{name} = ?" for name in _KEY)
        args = [getattr(key, name) for name in _KEY]
        return self._matching(where, args, machine_id, hardware_class)

    def near(self, file_id: str, *, machine_id: str, hardware_class: str | None = None) -> list[Profile]:
        """Runs of the same file with any settings that count here, newest first."""
        return self._matching("file_id = ?", [file_id], machine_id, hardware_class)

    def failures(self, file_id: str, *, machine_id: str, hardware_class: str | None = None) -> list[Profile]:
        """The runs of :meth:`near` that ran out of memory or crashed."""
        where = "file_id = ? AND outcome != 'ok'"
        return self._matching(where, [file_id], machine_id, hardware_class)

    def benchmarks(self, *, machine_id: str) -> list[Profile]:
        """This machine's own benchmark runs (``tailorlm bench``), newest first: what calibrates
        its speed model (:mod:`app.core.advice.speed_calibration`)."""
        where = "kind = 'bench' AND source = 'here' AND outcome = 'ok' AND machine_id = ?"
        return self._select(where, [machine_id], MAX_PROFILES)

    def all(self, limit: int = MAX_PROFILES) -> list[Profile]:
        """Every run kept, newest first, at most ``limit``."""
        return self._select("1", [], limit)

    def _matching(
        self, where: str, args: list[Any], machine_id: str, hardware_class: str | None
    ) -> list[Profile]:
        # SQL narrows to both candidates; matching() alone decides, so the rule lives in one place.
        where += " AND (machine_id = ? OR hardware_class = ?)"
        rows = self._select(where, [*args, machine_id, hardware_class], MAX_PROFILES)
        return matching(rows, machine_id=machine_id, hardware_class=hardware_class)

    def _select(self, where: str, args: list[Any], limit: int) -> list[Profile]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM profiles WHERE {where} ORDER BY measured_at DESC, id DESC LIMIT ?"
        try:
            with self._tx(write=False) as conn:
                rows = conn.execute(sql, [*args, limit]).fetchall()
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.DatabaseError as exc:
            log.warning("profiles could not be read from %s: %s", self.path, exc)
            return []  # advice without measurements, not no advice
        return [p for p in map(_profile, rows) if p is not None]

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; writes start IMMEDIATE so the busy timeout covers the
        write lock (under WAL a deferred one that later writes fails at once)."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def _row(profile: Profile) -> tuple[object, ...]:
    key, measured = dataclasses.astuple(profile.key), dataclasses.astuple(profile.measured)
    pred = profile.predicted
    rest = {name: getattr(profile, name) for name in _REST}
    rest["predicted"] = None if pred is None else json.dumps(dataclasses.asdict(pred))
    return (*key, *measured, *rest.values())


def _profile(row: tuple[Any, ...]) -> Profile | None:
    """A row as a Profile; None (logged) for one that is not valid, e.g. edited by hand."""
    n_key, n_measured = len(_KEY), len(_MEASURED)
    try:
        key_values = list(row[:n_key])
        key_values[-1] = bool(key_values[-1])  # flash_attn is stored as 0/1
        rest = dict(zip(_REST, row[n_key + n_measured :], strict=True))
        pred = rest.pop("predicted")
        return Profile(
            RunKey(*key_values),
            Measured(*row[n_key : n_key + n_measured]),
            **rest,
            predicted=None if pred is None else Predicted(**json.loads(pred)),
        )
    except (ProfileError, TypeError, ValueError) as exc:
        log.warning("an invalid profile row was skipped: %s", exc)
        return None


def _open(path: Path) -> tuple[sqlite3.Connection, Path | None, ProfileError | None]:
    """A checked, migrated connection, where a damaged file was moved (else None), and what the
    user should hear about it (else None)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not path.is_file():
            raise ProfileError(f"{path} is not a file.")
        try:
            return _connect(path), None, None
        except _Damaged:
            moved = move_aside(path)  # kept for the user or a recovery tool
            notice = ProfileError(
                "The file of measured runs was damaged, so a fresh one was started.",
                hint=f"The damaged file was moved aside to {moved}; nothing was deleted.",
            )
            return _connect(path), moved, notice
    except (OSError, sqlite3.Error, ProfileError, _Damaged) as exc:
        log.warning("profiles kept in memory only: %s cannot be used (%s)", path, exc)
        notice = ProfileError(
            "Measured runs cannot be kept on disk this session; advice still works.",
            hint=f"Check that {path} is a file TailorLM can write ({exc}).",
        )
        return _connect(None), None, notice


def _connect(path: Path | None) -> sqlite3.Connection:
    """Open (None: in memory), check, configure and migrate; _Damaged for a file that is not sound."""
    # check_same_thread=False: ProfileStore's lock serialises every use of the connection.
    target = ":memory:" if path is None else path
    conn = sqlite3.connect(
        target, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Check before anything writes: switching a damaged file to WAL could damage it further.
        if conn.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok":
            raise _Damaged("quick_check failed")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # safe under WAL; a power cut loses a run at most
        _migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()  # before the file is renamed: Windows cannot move an open file
        code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+; the messages are stable
        text = str(exc)
        if (
            (code is not None and code & 0xFF in _CORRUPTION_CODES)
            or "malformed" in text
            or "not a database" in text
        ):
            raise _Damaged(text) from exc
        raise
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return  # the usual case: no write lock taken on opening
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # again, under the lock
        if version > SCHEMA_VERSION:
            raise ProfileError("The file of measured runs was written by a newer TailorLM.")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
