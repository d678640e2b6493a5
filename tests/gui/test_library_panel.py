"""The Library & downloads panel against the real library, real GGUF files and the local fake Hub:
a folder's models appear, a pull from search to "verified" lands in the list, a cancel keeps the
partial file and Resume finishes it, and a gated repo says so in its row."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core.paths import hf_cache_dir
from app.gui.panels.library import LibraryPanel
from app.gui.panels.library_downloads import DownloadRow
from tests.fake_hub import RepoMeta, fake_hub

SMOL = "SmolLM2-135M-Instruct-Q4_1.gguf"


@pytest.fixture
def panel(library_panel: LibraryPanel) -> LibraryPanel:
    return library_panel


def _ids(panel: LibraryPanel) -> dict[str, object]:
    return {m.id: m for m, _ in panel.table_model.rows}


def test_a_bad_file_is_named_and_the_good_ones_still_show(
    panel: LibraryPanel, qtbot: QtBot, tmp_path: Path, smollm2_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    os.link(smollm2_path, folder / "good.gguf")
    (folder / "broken.gguf").write_bytes(smollm2_path.read_bytes()[:4096])  # a truncated download
    panel.add_folder(folder)
    qtbot.waitUntil(lambda: not panel.tasks, timeout=10_000)
    panel.rescan()
    qtbot.waitUntil(lambda: "Skipped" in panel.status.text(), timeout=10_000)
    assert "broken.gguf" in panel.status.text()
    assert [m.path.name for m, _ in panel.table_model.rows if m.path.parent == folder] == ["good.gguf"]


def _open(panel: LibraryPanel, qtbot: QtBot, repo: str) -> None:
    panel.hub.open_repo(repo)
    qtbot.waitUntil(
        lambda: bool(panel.hub.files) and "working out" not in panel.hub.status.text(), timeout=20_000
    )


def test_add_folder_lists_its_models_and_the_buttons_follow_the_selection(
    panel: LibraryPanel, qtbot: QtBot, tmp_path: Path, smollm2_path: Path
) -> None:
    folder = tmp_path / "my-models"
    folder.mkdir()
    os.link(smollm2_path, folder / "smol.Q4_1.gguf")
    panel.add_folder(folder)  # what "Add folder…" calls once the dialog returns
    qtbot.waitUntil(lambda: any(m.path.parent == folder for m, _ in panel.table_model.rows), timeout=10_000)
    [(model, present)] = [(m, p) for m, p in panel.table_model.rows if m.path.parent == folder]
    assert present and model.quant == "Q4_1" and "1 model found" in panel.status.text()
    r = next(i for i, (m, _) in enumerate(panel.table_model.rows) if m is model)
    row = [panel.table_model.data(panel.table_model.index(r, c)) for c in range(7)]
    assert row[4] == "folder" and row[6] == "yes" and row[5] == str(folder / "smol.Q4_1.gguf")

    panel.select_id(model.id)
    assert panel.chat_button.isEnabled() and not panel.delete_button.isEnabled()  # not ours to delete
    with qtbot.waitSignal(panel.ctx.open_chat) as chat, qtbot.waitSignal(panel.ctx.show_panel) as shown:
        panel.chat_button.click()
    assert chat.args == [str(model.path), {}] and shown.args == ["chat"]
    with qtbot.waitSignal(panel.advise_requested) as advise:
        panel.advise_button.click()
    assert advise.args == [str(model.path)]

    panel.remove_button.click()
    qtbot.waitUntil(lambda: model.id not in _ids(panel), timeout=10_000)
    assert (folder / "smol.Q4_1.gguf").is_file()


def test_search_pull_verify_and_the_model_appears(
    panel: LibraryPanel, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path, "README.md": b"hi"}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        panel.hub.query.setText("smol")
        panel.hub.query.returnPressed.emit()
        qtbot.waitUntil(lambda: panel.hub.repo_table.rowCount() == 1, timeout=10_000)
        assert panel.hub.repo_table.item(0, 0).text() == "acme/smol-GGUF"
        panel.hub.repo_table.selectRow(0)  # lists the files, then sizes each up
        files = panel.hub.file_table
        qtbot.waitUntil(lambda: files.rowCount() == 1 and files.item(0, 3).text() != "…", timeout=20_000)
        assert files.item(0, 1).text() == "Q4_1" and files.item(0, 3).text().startswith("★")
        files.selectRow(0)
        assert panel.hub.download_button.isEnabled()
        panel.hub.download_button.click()
        [row] = panel.downloads.rows
        qtbot.waitUntil(lambda: row.state in ("verified", "failed"), timeout=30_000)
    assert row.state == "verified", row.status.text()
    assert "Verified" in row.status.text() and row.bar.value() == 1000 and "of 93.8 MiB" in row.detail.text()
    qtbot.waitUntil(lambda: row.entry is not None and row.entry.id in _ids(panel), timeout=10_000)
    listed = _ids(panel)[row.entry.id]
    assert listed.origin == "tailorlm" and listed.owned and listed.repo == "acme/smol-GGUF"
    panel.select_id(row.entry.id)
    assert panel.delete_button.isEnabled()  # TailorLM downloaded it, so it may delete it
    panel.delete_files(row.entry.id)  # what the button calls after the confirmation
    qtbot.waitUntil(lambda: row.entry.id not in _ids(panel), timeout=10_000)
    assert not row.entry.path.exists()


def test_cancel_keeps_the_part_file_and_resume_finishes(
    panel: LibraryPanel, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    repos: dict[str, dict[str, bytes | Path]] = {"acme/smol-GGUF": {SMOL: smollm2_path}}
    with fake_hub(repos, rate_bytes_s=25e6) as url:  # ~4 s for the file: room to cancel mid-way
        monkeypatch.setenv("HF_ENDPOINT", url)
        _open(panel, qtbot, "acme/smol-GGUF")
        row: DownloadRow = panel.downloads.enqueue("acme/smol-GGUF", panel.hub.files[0])
        qtbot.waitUntil(lambda: row.bar.value() > 50, timeout=20_000)
        row.cancel_button.click()
        qtbot.waitUntil(lambda: row.state == "cancelled", timeout=10_000)
    assert not row.resume_button.isHidden() and row.cancel_button.isHidden()
    assert "partial file is kept" in row.status.text()
    [part] = hf_cache_dir().rglob("*.part")
    kept = part.stat().st_size
    assert 0 < kept < smollm2_path.stat().st_size

    requests: list[str] = []
    with fake_hub(repos, requests=requests) as url:  # the link is back, and faster
        monkeypatch.setenv("HF_ENDPOINT", url)
        row.resume_button.click()
        qtbot.waitUntil(lambda: row.state in ("verified", "failed"), timeout=30_000)
    assert row.state == "verified", row.status.text()
    assert any(r.startswith("GET /cdn-lfs/") and r.endswith(f"bytes={kept}-") for r in requests)
    assert not list(hf_cache_dir().rglob("*.part"))


def test_a_gated_repo_fails_in_its_row_in_plain_words(
    panel: LibraryPanel, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    errors: list[tuple[str, str]] = []
    panel.ctx.error.connect(lambda m, h: errors.append((m, h)))
    meta = {"acme/gated-GGUF": RepoMeta(gated_token="hf_secret")}
    with fake_hub({"acme/gated-GGUF": {SMOL: smollm2_path}}, meta=meta) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        _open(panel, qtbot, "acme/gated-GGUF")
        row = panel.downloads.enqueue("acme/gated-GGUF", panel.hub.files[0])
        qtbot.waitUntil(lambda: row.state in ("verified", "failed"), timeout=20_000)
    assert row.state == "failed"
    text = row.status.text()
    assert "gated or private" in text and "HF_TOKEN" in text and "Traceback" not in text
    assert errors and "gated or private" in errors[-1][0]
    assert not row.resume_button.isHidden()  # after accepting the license and setting HF_TOKEN


def test_every_control_is_named_and_reachable_by_keyboard(panel: LibraryPanel) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QComboBox, QLineEdit, QPlainTextEdit, QProgressBar, QPushButton, QTableView

    kinds = (QPushButton, QLineEdit, QComboBox, QTableView, QPlainTextEdit, QProgressBar)
    controls = [w for kind in kinds for w in panel.findChildren(kind)]
    assert len(controls) >= 12
    for w in controls:
        assert w.accessibleName(), w
        assert isinstance(w, QProgressBar) or w.focusPolicy() != Qt.FocusPolicy.NoFocus, w.accessibleName()


def test_the_advisors_download_and_chat_pulls_then_opens_the_chat(
    panel: LibraryPanel, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    opened: list[tuple[str, dict[str, object]]] = []
    panel.ctx.open_chat.connect(lambda path, load: opened.append((path, load)))
    want = {"repo_id": "acme/smol-GGUF", "quant": "Q4_1", "n_ctx": 2048, "n_gpu_layers": 0}
    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        panel.pull(want)  # what the Advisor's pull_requested carries, through the window
        qtbot.waitUntil(lambda: len(panel.downloads.rows) == 1, timeout=10_000)
        qtbot.waitUntil(lambda: bool(opened), timeout=30_000)
    path, load = opened[0]
    assert Path(path).is_file() and load == {"n_ctx": 2048, "n_gpu_layers": 0}
    assert panel.tabs.currentWidget() is panel.hub  # where the download shows


def test_a_failed_search_is_told_once_under_the_search_not_in_the_banner_too(
    panel: LibraryPanel, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[tuple[str, str]] = []
    panel.ctx.error.connect(lambda m, h: errors.append((m, h)))
    with fake_hub({"acme/smol-GGUF": {}}, answer="html") as url:  # a captive portal's web page
        monkeypatch.setenv("HF_ENDPOINT", url)
        panel.hub.query.setText("smol")
        panel.hub.query.returnPressed.emit()
        qtbot.waitUntil(lambda: "Search failed" in panel.hub.status.text(), timeout=10_000)
    assert "malformed or hostile" in panel.hub.status.text()
    assert errors == []


def test_the_download_queue_is_never_an_empty_box(panel: LibraryPanel) -> None:
    assert not panel.downloads.empty.isHidden() and "Hugging Face Hub tab" in panel.downloads.empty.text()
