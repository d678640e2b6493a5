"""Measured runs (issue 19): a file known by its header and size, a machine by a hash of its
hardware, kept in a bounded SQLite file that survives damage, exported without a path or a name,
imported strictly and counted only on the same hardware class."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import getpass
import json
import os
import random
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core import paths
from app.core.advice import profiles_db
from app.core.advice.profiles import (
    IDENTITY_BYTES,
    MAX_IMPORT,
    VERSION,
    Measured,
    Predicted,
    Profile,
    RunKey,
    export_profiles,
    file_identity,
    import_profiles,
    machine_fingerprint,
    matching,
    utc_now,
)
from app.core.advice.profiles_db import ProfileStore
from app.core.advice.speed import SPEED_MODEL_VERSION
from app.core.errors import NotAGGUFError, ProfileError
from app.core.machine.gpus import GpuInfo
from app.core.machine.hardware import detect_machine
from app.core.units import GIB

MACHINE = "a" * 64
OTHER_MACHINE = "b" * 64
HW = "cpu:AMD EPYC/2c/avx512"


def _when(i: int) -> str:
    return f"2026-12-01T10:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}+00:00"


def _profile(i: int = 0, *, file_id: str = "f" * 64, n_ctx: int = 4096, outcome: str = "ok",
             machine_id: str = MACHINE, hardware_class: str = HW, source: str = "here") -> Profile:  # fmt: skip
    key = RunKey(file_id, "Q4_K_M", n_ctx, "F16", "F16", 99, 0, 2, True)
    ok = outcome == "ok"
    measured = Measured(
        outcome, 3 * GIB, None, 1.5 if ok else None, 41.0 if ok else None, 310.0 if ok else None,
        512 if ok else None, _when(i),
    )  # fmt: skip
    return Profile(key, measured, machine_id, hardware_class, "0.3.16", source, "Gemma 3 270m")


PREDICTED = Predicted(SPEED_MODEL_VERSION, 3 * GIB, 0, 40.0, 300.0, 0.02, 0.005, 0.0, 0.0, 0.003, 0.0)


def _bench(i: int = 0) -> Profile:
    """A benchmark run with its prediction beside it."""
    measured = dataclasses.replace(_profile(i).measured, n_prompt=512, n_gen=128, reps=3)
    return dataclasses.replace(_profile(i), measured=measured, kind="bench", predicted=PREDICTED)


@pytest.fixture
def store() -> Iterator[ProfileStore]:
    with ProfileStore() as s:
        yield s


# The file's identity


def test_identity_follows_the_bytes_not_the_name(
    smollm2_path: Path, gemma3_path: Path, tmp_path: Path
) -> None:
    copy_path = tmp_path / "renamed elsewhere.gguf"
    shutil.copyfile(smollm2_path, copy_path)
    assert file_identity(copy_path) == file_identity(smollm2_path)
    assert file_identity(gemma3_path) != file_identity(smollm2_path)
    with copy_path.open("r+b") as f:  # one byte of the metadata (just after the counts)
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    assert file_identity(copy_path) != file_identity(smollm2_path)


def test_identity_of_a_4_gib_file_reads_only_its_head(smollm2_path: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.gguf"
    shutil.copyfile(smollm2_path, big)
    os.truncate(big, 4 * GIB)  # sparse: no disk used
    before = file_identity(big)
    assert before != file_identity(smollm2_path)  # the size is part of it
    with big.open("r+b") as f:  # the weights' tail changes: never read, so the identity stays
        f.seek(IDENTITY_BYTES + 1)
        f.write(b"x")
        f.seek(4 * GIB - 1)
        f.write(b"x")
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        assert file_identity(big) == before
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.05


def test_a_file_that_is_not_a_gguf_has_no_identity(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(NotAGGUFError):
        file_identity(text)


# The machine's fingerprint


def test_fingerprint_is_stable_and_names_no_path_host_or_user(tmp_path: Path) -> None:
    machine = detect_machine(measure_bandwidth=False)
    machine_id, hardware_class = machine_fingerprint(machine)
    assert machine_fingerprint(detect_machine(measure_bandwidth=False)) == (machine_id, hardware_class)
    assert len(machine_id) == 64 and int(machine_id, 16) >= 0
    assert hardware_class.startswith(f"cpu:{' '.join(machine.cpu.model.split())[:20]}")
    assert f"/{machine.cpu.physical_cores}c/" in hardware_class
    assert hardware_class.count("|gpu:") == len(machine.gpus)
    personal = {socket.gethostname(), getpass.getuser(), str(Path.home()), str(tmp_path), os.sep + "home"}
    for text in (machine_id, hardware_class):
        assert not any(p and p in text for p in personal), text
    more_ram = dataclasses.replace(machine, ram_total_bytes=machine.ram_total_bytes + 2 * GIB)
    assert machine_fingerprint(more_ram)[0] != machine_id  # another machine for runs measured here
    assert machine_fingerprint(more_ram)[1] == hardware_class  # but the same class


def test_a_gpu_is_in_the_class_by_name_and_size_and_its_driver_only_in_the_id() -> None:
    machine = detect_machine(measure_bandwidth=False)
    gpu = GpuInfo(0, "NVIDIA H200", "nvidia", "cuda", 143_771 * 2**20, None, driver_version="570.1")
    with_gpu = dataclasses.replace(machine, gpus=(gpu, gpu))
    machine_id, hardware_class = machine_fingerprint(with_gpu)
    assert hardware_class.endswith("|gpu:NVIDIA H200/140GiB|gpu:NVIDIA H200/140GiB")
    assert "570" not in hardware_class
    new_driver = dataclasses.replace(with_gpu, gpus=(dataclasses.replace(gpu, driver_version="580.2"),) * 2)
    assert machine_fingerprint(new_driver)[0] != machine_id
    assert machine_fingerprint(new_driver)[1] == hardware_class


# The store


def test_record_find_near_and_failures(store: ProfileStore) -> None:
    ok_4k, ok_8k = _profile(1), _profile(2, n_ctx=8192)
    oom_8k = _profile(3, n_ctx=8192, outcome="out_of_memory")
    elsewhere = _profile(4, machine_id=OTHER_MACHINE)
    for p in (ok_4k, ok_8k, oom_8k, elsewhere, _profile(5, file_id="e" * 64)):
        store.record(p)
    store.record(ok_4k)  # the same run again: nothing changes
    assert store.find(ok_8k.key, machine_id=MACHINE) == [oom_8k, ok_8k]  # newest first
    assert store.find(ok_4k.key, machine_id=MACHINE) == [ok_4k]
    assert store.near("f" * 64, machine_id=MACHINE) == [oom_8k, ok_8k, ok_4k]
    assert store.failures("f" * 64, machine_id=MACHINE) == [oom_8k]
    assert store.near("0" * 64, machine_id=MACHINE) == []
    assert len(store.all(100)) == 5 and len(store.all(2)) == 2
    with ProfileStore() as again:  # kept on disk, under the data dir
        assert again.find(ok_4k.key, machine_id=MACHINE) == [ok_4k]
    assert (paths.data_dir() / "profiles.sqlite").is_file()


def test_the_store_keeps_only_the_newest_max_profiles(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profiles_db, "MAX_PROFILES", 20)
    for i in range(30):
        store.record(_profile(i, n_ctx=1000 + i))
    kept = store.all(100)
    assert len(kept) == 20
    assert [p.key.n_ctx for p in kept] == list(range(1029, 1009, -1))  # the ten oldest are gone


def test_a_damaged_file_is_moved_aside_and_a_fresh_store_works(tmp_path: Path) -> None:
    db = tmp_path / "profiles.sqlite"
    junk = random.Random(0).randbytes(8192)
    db.write_bytes(junk)
    with ProfileStore(db) as store:
        assert store.recovered_from is not None and store.recovered_from.read_bytes() == junk
        assert store.notice is not None and str(store.recovered_from) in (store.notice.hint or "")
        store.record(_profile(1))
    with ProfileStore(db) as store:
        assert store.recovered_from is None and store.notice is None
        assert store.all() == [_profile(1)]


def test_a_file_with_damaged_pages_is_moved_aside(tmp_path: Path) -> None:
    db = tmp_path / "profiles.sqlite"
    with ProfileStore(db) as store:
        store.record_many(_profile(i, n_ctx=1000 + i) for i in range(200))
    data = bytearray(db.read_bytes())
    data[4096:] = random.Random(1).randbytes(len(data) - 4096)  # page 1 (the schema) stays
    db.write_bytes(bytes(data))
    with ProfileStore(db) as store:
        assert store.recovered_from is not None and store.all() == []


def test_a_file_that_cannot_be_opened_gives_a_store_in_memory(tmp_path: Path) -> None:
    folder = tmp_path / "profiles.sqlite"
    folder.mkdir()  # a folder where the file belongs
    with ProfileStore(folder) as store:
        assert store.notice is not None and "advice still works" in str(store.notice)
        store.record(_profile(1))
        assert store.all() == [_profile(1)]
    assert folder.is_dir() and not list(folder.iterdir())


def test_a_file_from_a_newer_version_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "profiles.sqlite"
    with ProfileStore(db) as store:
        store.record(_profile(1))
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {profiles_db.SCHEMA_VERSION + 1}")
    conn.close()
    with ProfileStore(db) as store:
        assert store.notice is not None and store.recovered_from is None and store.all() == []
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_a_row_edited_by_hand_is_skipped(tmp_path: Path) -> None:
    db = tmp_path / "profiles.sqlite"
    with ProfileStore(db) as store:
        store.record_many([_profile(1), _profile(2, n_ctx=8192)])
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE profiles SET peak_ram_bytes = -5 WHERE n_ctx = 8192")
    conn.close()
    with ProfileStore(db) as store:
        assert store.all() == [_profile(1)]


def test_threads_share_one_store(store: ProfileStore) -> None:
    def work(t: int) -> None:
        for i in range(20):
            store.record(_profile(t * 100 + i, n_ctx=1 + t * 100 + i))
            store.near("f" * 64, machine_id=MACHINE)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.all()) == 80


# Export and import


def test_export_holds_no_path_host_or_user(store: ProfileStore, smollm2_path: Path, tmp_path: Path) -> None:
    machine_id, hardware_class = machine_fingerprint(detect_machine(measure_bandwidth=False))
    key = RunKey(file_identity(smollm2_path), "Q4_1", 2048, "F16", "F16", 0, 0, 2, True)
    measured = Measured("ok", 400_000_000, None, 0.4, 80.0, 900.0, 128, utc_now())
    store.record(Profile(key, measured, machine_id, hardware_class, "0.3.16", "here", "Smollm2 135M"))
    text = json.dumps(export_profiles(store.all()))
    home = os.path.expanduser("~")
    personal = {socket.gethostname(), getpass.getuser(), home, str(Path.home()), str(tmp_path),
                str(smollm2_path), str(smollm2_path.parent), smollm2_path.name, os.environ["TAILORLM_HOME"]}  # fmt: skip
    with contextlib.suppress(OSError):  # no login name without a terminal
        personal.add(os.getlogin())
    assert not any(p in text for p in personal if len(p) > 2)
    assert not any(part.startswith(("/", "~", "\\")) for part in json.loads(text)["profiles"][0].values()
                   if isinstance(part, str))  # fmt: skip


def test_import_keeps_machine_marks_imported_and_is_idempotent(tmp_path: Path) -> None:
    mine = [_profile(i, machine_id=OTHER_MACHINE, hardware_class="cpu:Apple M2/8c/neon") for i in range(3)]
    data = json.loads(json.dumps(export_profiles(mine)))
    with ProfileStore(tmp_path / "p.sqlite") as store:
        assert import_profiles(data, store) == 3
        assert import_profiles(data, store) == 0  # the same file again
        got = store.all()
    assert {p.source for p in got} == {"imported"}
    assert {(p.machine_id, p.hardware_class) for p in got} == {(OTHER_MACHINE, "cpu:Apple M2/8c/neon")}
    assert [dataclasses.replace(p, source="here") for p in got] == mine[::-1]  # all else as exported


def test_imported_profiles_count_only_on_the_same_hardware_class(store: ProfileStore) -> None:
    here = _profile(1)
    twin = _profile(2, machine_id=OTHER_MACHINE)  # imported from a machine of the same class
    other_class = _profile(3, machine_id=OTHER_MACHINE, hardware_class="cpu:Intel Xeon/8c/avx2")
    same_id_other_class = _profile(4, hardware_class="cpu:Intel Xeon/8c/avx2")
    store.record(here)
    import_profiles(export_profiles([twin, other_class, same_id_other_class]), store)
    imported_twin = dataclasses.replace(twin, source="imported")
    assert store.near("f" * 64, machine_id=MACHINE, hardware_class=HW) == [imported_twin, here]
    assert store.near("f" * 64, machine_id=MACHINE) == [here]  # no class given: only runs from here
    everything = store.all()
    assert matching(everything, machine_id=MACHINE, hardware_class=HW) == [imported_twin, here]
    assert matching(everything, machine_id=OTHER_MACHINE, hardware_class="cpu:Intel Xeon/8c/avx2") == [
        dataclasses.replace(same_id_other_class, source="imported"),
        dataclasses.replace(other_class, source="imported"),
    ]


def _exported() -> dict[str, Any]:
    return json.loads(json.dumps(export_profiles([_profile(1)])))


def _broken(change: str) -> object:
    data = _exported()
    entry = data["profiles"][0]
    if change == "version":
        data["version"] = VERSION + 1
    elif change == "format":
        data["format"] = "something-else"
    elif change == "not a list":
        data["profiles"] = {"a": 1}
    elif change == "too many":
        data["profiles"] = [entry] * (MAX_IMPORT + 1)
    elif change == "negative bytes":
        entry["measured"]["peak_ram_bytes"] = -1
    elif change == "bool for int":
        entry["key"]["n_ctx"] = True
    elif change == "string for int":
        entry["key"]["n_gpu_layers"] = "99"
    elif change == "nan speed":
        entry["measured"]["gen_tok_s"] = float("nan")
    elif change == "long name":
        entry["model_name"] = "x" * 10_000
    elif change == "path name":
        entry["model_name"] = "/home/someone/models/x.gguf"
    elif change == "missing field":
        del entry["measured"]["when"]
    elif change == "extra field":
        entry["path"] = "/home/someone/models/x.gguf"
    elif change == "bad outcome":
        entry["measured"]["outcome"] = "great"
    elif change == "bad file id":
        entry["key"]["file_id"] = "../../etc/passwd"
    elif change == "not utc":
        entry["measured"]["when"] = "2026-12-01T10:00:00.000000+02:00"
    elif change == "future":
        entry["measured"]["when"] = "2999-01-01T00:00:00.000000+00:00"
    elif change == "entry not object":
        data["profiles"] = ["x"]
    elif change == "bad kind":
        entry["kind"] = "guess"
    elif change == "nan term":
        entry["predicted"] = dataclasses.asdict(PREDICTED) | {"cpu_bytes": float("nan")}
    elif change == "predicted extra":
        entry["predicted"] = dataclasses.asdict(PREDICTED) | {"path": "/home/someone"}
    elif change == "predicted not object":
        entry["predicted"] = [1, 2]
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("version", f"version {VERSION + 1}"),
        ("format", "not a TailorLM profiles file"),
        ("not a list", "no list"),
        ("too many", "10,001"),
        ("negative bytes", "peak_ram_bytes"),
        ("bool for int", "n_ctx has the wrong type"),
        ("string for int", "n_gpu_layers has the wrong type"),
        ("nan speed", "gen_tok_s"),
        ("long name", "model_name must have 1 to 256"),
        ("path name", "model_name must not be a path"),
        ("missing field", "measured.when is missing"),
        ("extra field", "unknown fields: path"),
        ("bad outcome", "outcome"),
        ("bad file id", "file_id"),
        ("not utc", "measured.when"),
        ("future", "future"),
        ("entry not object", "must be an object"),
        ("bad kind", "kind must be one of answer, server, bench, load"),
        ("nan term", "predicted.cpu_bytes"),
        ("predicted extra", "predicted has unknown fields: path"),
        ("predicted not object", "predicted must be an object"),
    ],
)
def test_import_refuses_what_is_wrong_and_keeps_nothing(
    store: ProfileStore, change: str, message: str
) -> None:
    data = _broken(change)
    with pytest.raises(ProfileError, match=message):
        import_profiles(copy.deepcopy(data), store)
    assert store.all() == []


@pytest.mark.parametrize("data", [None, [], "text", 42, {"format": "tailorlm-profiles"}])
def test_import_refuses_what_is_not_an_export(store: ProfileStore, data: object) -> None:
    with pytest.raises(ProfileError):
        import_profiles(data, store)


def test_a_benchmark_and_its_prediction_round_trip_the_store_and_an_export(store: ProfileStore) -> None:
    store.record_many([_bench(1), _profile(2, n_ctx=8192)])
    assert store.all() == [_profile(2, n_ctx=8192), _bench(1)]
    back = import_profiles(json.loads(json.dumps(export_profiles([_bench(3)]))), store)
    assert back == 1 and store.all()[0] == dataclasses.replace(_bench(3), source="imported")
    assert store.all()[0].predicted.terms()["cpu_bytes"] == 0.02  # type: ignore[union-attr]


def test_a_version_1_export_still_imports_as_answers_without_predictions(store: ProfileStore) -> None:
    data = _exported()
    data["version"] = 1
    entry = data["profiles"][0]
    for name in ("kind", "predicted"):
        del entry[name]
    for name in ("n_prompt", "n_gen", "reps", "others_cpu_share"):
        del entry["measured"][name]
    assert import_profiles(data, store) == 1
    assert store.all() == [dataclasses.replace(_profile(1), source="imported")]


def test_a_version_1_file_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    db = tmp_path / "profiles.sqlite"
    with sqlite3.connect(db) as conn:
        for statement in profiles_db._MIGRATIONS[1]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        old = [*profiles_db._COLUMNS[: profiles_db._COLUMNS.index("n_prompt")],
               "machine_id", "hardware_class", "llama_cpp", "source", "model_name"]  # fmt: skip
        p = _profile(1)
        values = [*dataclasses.astuple(p.key), *dataclasses.astuple(p.measured)[:8], MACHINE, HW, "0.3.16", "here",
                  "Gemma 3 270m"]  # fmt: skip
        conn.execute(f"INSERT INTO profiles ({', '.join(old)}) VALUES ({', '.join('?' * len(old))})", values)
    conn.close()
    with ProfileStore(db) as store:
        assert store.notice is None and store.all() == [p]
        store.record(_bench(2))
        assert store.all() == [_bench(2), p]
