"""The download queue of the Library panel: one row per pull with a progress bar, bytes, speed, ETA,
part i/n and its state (queued → downloading → verifying → verified | cancelled | failed).

Pulls run one at a time: a laptop's link is the bottleneck, and a queue finishes the first file
first. A cancelled pull keeps its ``.part`` file, so Resume simply calls ``pull`` again and it
continues where it stopped.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.core.units import format_bytes
from app.gui.context import AppContext
from app.gui.workers import Worker, start_worker

ACTIVE = ("downloading", "verifying")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


class DownloadRow(QFrame):
    """One pull of one GGUF model (all its parts) into the shared Hugging Face cache."""

    def __init__(self, queue: DownloadQueue, repo: str, repo_file: Any) -> None:
        super().__init__()
        self.queue, self.repo, self.repo_file = queue, repo, repo_file
        self.state = "queued"
        self.task: Worker | None = None
        self.entry: Any = None  # the LibraryModel once verified
        self.setFrameShape(QFrame.Shape.StyledPanel)
        name = f"{repo} / {repo_file.file.first}"
        self.setAccessibleName(f"Download of {name}")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setAccessibleName(f"Progress of {name}")
        self.detail = QLabel("")
        self.detail.setAccessibleName(f"Bytes, speed and time left of {name}")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setAccessibleName(f"State of {name}")
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.cancel_button = QPushButton("Cancel")
        self.resume_button = QPushButton("Resume")
        self.clear_button = QPushButton("Remove from list")
        top = QHBoxLayout()
        title = QLabel(name)
        title.setTextFormat(Qt.TextFormat.PlainText)
        top.addWidget(title, 1)
        for button, what, slot in (
            (self.cancel_button, "Cancel", self.cancel),
            (self.resume_button, "Resume", self.resume),
            (self.clear_button, "Remove from the list", lambda: queue.remove_row(self)),
        ):
            button.setAccessibleName(f"{what} the download of {name}")
            button.clicked.connect(slot)
            top.addWidget(button)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        for w in (self.bar, self.detail, self.status):
            lay.addWidget(w)
        self._show("queued", "Queued")

    def _show(self, state: str, text: str) -> None:
        self.state = state
        self.status.setText(text)
        self.cancel_button.setVisible(state in ("queued", *ACTIVE))
        self.resume_button.setVisible(state in ("cancelled", "failed"))
        self.clear_button.setVisible(state in ("verified", "cancelled", "failed"))

    def start(self) -> None:
        from app.core.library.pull import pull_model

        repo, rf, library = self.repo, self.repo_file, self.queue.ctx.library
        self._show("downloading", "Downloading…")

        def work(report: Any, cancel: Any) -> Any:
            return pull_model(repo, rf, library=library, on_progress=report, cancel=cancel)

        self.task = start_worker(work, owner=self, on_yield=self._progress, on_return=self._done,
                                 on_error=self._failed)  # fmt: skip

    def _progress(self, p: Any) -> None:
        if self.state not in ACTIVE:
            return  # a late report after Cancel
        if p.total_bytes:
            self.bar.setValue(int(1000 * p.done_bytes / p.total_bytes))
        part = f" — part {p.part}/{p.n_parts}" if p.n_parts > 1 else ""
        total = format_bytes(p.total_bytes) if p.total_bytes else "?"
        speed = format_bytes(p.speed_bytes_s)
        self.detail.setText(
            f"{format_bytes(p.done_bytes)} of {total} — {speed}/s — {duration(p.eta_s)} left{part}"
        )
        if p.total_bytes and p.done_bytes >= p.total_bytes and p.part == p.n_parts:
            self._show("verifying", "Verifying the SHA-256 and adding it to the library…")

    def _done(self, result: Any) -> None:
        _paths, self.entry = result
        self.bar.setValue(1000)
        ident = f" as {self.entry.id}" if self.entry is not None else ""
        self._show("verified", f"Verified ✓ — in the library{ident}.")
        self.queue.row_finished(self)

    def _failed(self, message: str, hint: str, cancelled: bool) -> None:
        if cancelled:
            self._show(
                "cancelled", "Cancelled — the partial file is kept; Resume continues where it stopped."
            )
        else:
            self._show("failed", f"Failed: {message} {hint}".strip())
            self.queue.ctx.error.emit(message, hint)
        self.queue.row_finished(self)

    def cancel(self) -> None:
        if self.task is not None and self.state in ACTIVE:
            self.task.cancel()
            self.status.setText("Stopping…")
        elif self.state == "queued":
            self._show("cancelled", "Cancelled before it started.")

    def resume(self) -> None:
        self._show("queued", "Queued")
        self.queue.pump()


class DownloadQueue(QGroupBox):
    """The rows, one running at a time; ``verified`` carries the new library entry."""

    verified = Signal(object)  # LibraryModel of a pull that was verified and registered

    def __init__(self, ctx: AppContext) -> None:
        super().__init__("Downloads")
        self.ctx = ctx
        self.rows: list[DownloadRow] = []
        self.box = QVBoxLayout()
        self.box.addStretch(1)
        holder = QWidget()
        holder.setLayout(self.box)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(holder)
        scroll.setAccessibleName("Download queue")
        QVBoxLayout(self).addWidget(scroll)

    def enqueue(self, repo: str, repo_file: Any) -> DownloadRow:
        """Queue a pull, or bring back the row of the same file (resuming it if it stopped)."""
        for row in self.rows:
            if row.repo == repo and row.repo_file.file.paths == repo_file.file.paths:
                if row.state in ("cancelled", "failed"):
                    row.resume()
                return row
        row = DownloadRow(self, repo, repo_file)
        self.rows.append(row)
        self.box.insertWidget(self.box.count() - 1, row)
        self.pump()
        return row

    def pump(self) -> None:
        """Start the next queued pull when none is running."""
        if any(r.state in ACTIVE for r in self.rows):
            return
        if nxt := next((r for r in self.rows if r.state == "queued"), None):
            nxt.start()

    def row_finished(self, row: DownloadRow) -> None:
        if row.state == "verified":
            self.verified.emit(row.entry)
        self.pump()

    def remove_row(self, row: DownloadRow) -> None:
        self.rows.remove(row)
        self.box.removeWidget(row)
        row.deleteLater()

    def shutdown(self) -> None:
        """Stop every pull (their partial files stay) and drop what is queued."""
        for row in self.rows:
            row.cancel()
