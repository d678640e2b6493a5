"""The download queue of the Library panel: one row per pull with a progress bar, bytes, speed, ETA,
part i/n and its state (queued → downloading → verifying → verified | cancelled | failed |
waiting for the network).

Pulls run one at a time: a laptop's link is the bottleneck, and a queue finishes the first file
first. A cancelled or failed pull keeps its ``.part`` file, so Resume/Retry simply calls ``pull``
again and it continues where it stopped. Offline, a row is never dropped: it waits for the
network, tries again by itself now and then, and offers Retry and Remove.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
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
STOPPED = ("cancelled", "failed", "waiting")  # a Resume/Retry starts them again
# A waiting row tries again a second after the Hub's "offline" verdict expires (a sooner try would
# only read the cached verdict back): app.core.hub.online.OFFLINE_TTL_S + 1 s.
AUTO_RETRY_MARGIN_S = 1.0
WAITING = "Waiting for the network — you're offline; it continues by itself once you're back. Your local models still work."  # fmt: skip
EMPTY = "No downloads. Pick a file in the Hugging Face Hub tab, or use the Advisor's “Download … and chat”."


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


def auto_retry_ms() -> int:
    from app.core.hub.online import OFFLINE_TTL_S

    return int(1000 * (OFFLINE_TTL_S + AUTO_RETRY_MARGIN_S))


class DownloadRow(QFrame):
    """One pull of one GGUF model (all its parts) into the shared Hugging Face cache.

    ``repo_file`` is the RepoGGUF to pull, or None while only ``want`` is known (the Advisor's
    {"quant"} or {"filename"}) because the repo could not be listed yet: the work lists it first.
    """

    def __init__(
        self, queue: DownloadQueue, repo: str, repo_file: Any, want: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.queue, self.repo, self.repo_file = queue, repo, repo_file
        self.want = dict(want or {})
        self.state = "queued"
        self.task: Worker | None = None
        self.entry: Any = None  # the LibraryModel once verified
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.detail = QLabel("")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.cancel_button = QPushButton("Cancel")
        self.resume_button = QPushButton("Resume")
        self.clear_button = QPushButton("Remove from list")
        self.retry_timer = QTimer(self)  # a waiting row tries again by itself
        self.retry_timer.setSingleShot(True)
        self.retry_timer.timeout.connect(self._retry_by_itself)
        top = QHBoxLayout()
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        top.addWidget(self.title, 1)
        for button, slot in (
            (self.cancel_button, self.cancel),
            (self.resume_button, self.resume),
            (self.clear_button, lambda: queue.remove_row(self)),
        ):
            button.clicked.connect(slot)
            top.addWidget(button)
        self._name_widgets()
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        for w in (self.bar, self.detail, self.status):
            lay.addWidget(w)
        self._show("queued", "Queued")

    def name(self) -> str:
        if self.repo_file is not None:
            return f"{self.repo} / {self.repo_file.file.first}"
        return (
            f"{self.repo} / {self.want.get('filename') or self.want.get('quant') or 'the recommended file'}"
        )

    def _name_widgets(self) -> None:
        name = self.name()
        self.title.setText(name)
        self.setAccessibleName(f"Download of {name}")
        self.bar.setAccessibleName(f"Progress of {name}")
        self.detail.setAccessibleName(f"Bytes, speed and time left of {name}")
        self.status.setAccessibleName(f"State of {name}")
        self.cancel_button.setAccessibleName(f"Cancel the download of {name}")
        self.clear_button.setAccessibleName(f"Remove the download of {name} from the list")
        verb = "Resume" if self.state == "cancelled" else "Retry"
        self.resume_button.setAccessibleName(f"{verb} the download of {name}")

    def matches(self, repo: str, *, paths: tuple[str, ...] = (), quant: str | None = None,
                filename: str | None = None) -> bool:  # fmt: skip
        """Whether this row pulls that file (by its parts, its quantization or a file name)."""
        if repo != self.repo:
            return False
        if self.repo_file is None:
            return (filename or None, (quant or "").upper() or None) == (
                self.want.get("filename") or None, (self.want.get("quant") or "").upper() or None)  # fmt: skip
        have = self.repo_file.file
        if paths:
            return tuple(paths) == tuple(have.paths)
        if filename:
            return filename in have.paths or any(p.rsplit("/", 1)[-1] == filename for p in have.paths)
        return bool(quant) and (have.quant or "").upper() == (quant or "").upper()

    def _show(self, state: str, text: str) -> None:
        self.state = state
        self.status.setText(text)
        self.cancel_button.setVisible(state in ("queued", *ACTIVE))
        self.resume_button.setText("Resume" if state == "cancelled" else "Retry")
        self.resume_button.setVisible(state in STOPPED)
        self.clear_button.setVisible(state in ("verified", *STOPPED))
        self._name_widgets()
        if state != "waiting":
            self.retry_timer.stop()

    def start(self) -> None:
        from app.core.hub.repo import RepoGGUF, list_gguf_files, select_file
        from app.core.library.pull import pull_model

        repo, rf, want, library = self.repo, self.repo_file, self.want, self.queue.ctx.library
        self._show("downloading", "Listing the repo's files…" if rf is None else "Downloading…")

        def work(report: Callable[[Any], None], cancel: Any) -> Any:
            chosen = rf
            if chosen is None:  # the Advisor asked by quantization or name; the repo could not be listed then
                chosen = select_file(
                    list_gguf_files(repo), quant=want.get("quant"), filename=want.get("filename")
                )
                report(chosen)
            return pull_model(repo, chosen, library=library, on_progress=report, cancel=cancel)

        def progress(p: Any) -> None:
            if isinstance(p, RepoGGUF):
                self._resolved(p)
            else:
                self._progress(p)

        self.task = start_worker(work, owner=self, on_yield=progress, on_return=self._done,
                                 on_error=self.show_failure)  # fmt: skip

    def _resolved(self, repo_file: Any) -> None:
        self.repo_file = repo_file
        self._name_widgets()
        if self.state == "downloading":
            self.status.setText("Downloading…")

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

    def show_failure(self, message: str, hint: str, cancelled: bool) -> None:
        """How the pull ended when it did not finish: cancelled, waiting for the network, or failed."""
        from app.core.hub.online import OFFLINE_SENTENCE

        if cancelled:
            self._show(
                "cancelled", "Cancelled — the partial file is kept; Resume continues where it stopped."
            )
        elif message == OFFLINE_SENTENCE:  # not a failure: said here only, and it comes back by itself
            self._show("waiting", WAITING)
            self.status.setToolTip(hint)
            self.retry_timer.start(auto_retry_ms())
        else:
            kept = " Retry continues where it stopped." if self.repo_file is not None else ""
            self._show("failed", f"Failed: {message} {hint}".strip() + kept)
            self.queue.ctx.error.emit(message, hint)  # the window's banner: a download ends anywhere
        self.queue.row_finished(self)

    def cancel(self) -> None:
        if self.task is not None and self.state in ACTIVE:
            self.task.cancel()
            self.status.setText("Stopping…")
        elif self.state in ("queued", "waiting"):
            self._show("cancelled", "Cancelled before it started.")

    def resume(self) -> None:
        """Resume or Retry: queue it again. An explicit Retry asks the network afresh."""
        if self.state in ("failed", "waiting"):
            from app.core.hub.online import forget

            forget()
        self._show("queued", "Queued")
        self.queue.pump()

    def _retry_by_itself(self) -> None:
        if self.state == "waiting":
            self._show("queued", "Queued — checking the network again…")
            self.queue.pump()


class DownloadQueue(QGroupBox):
    """The rows, one running at a time; ``verified`` carries the new library entry."""

    verified = Signal(object)  # LibraryModel of a pull that was verified and registered

    def __init__(self, ctx: AppContext) -> None:
        super().__init__("Downloads")
        self.ctx = ctx
        self.rows: list[DownloadRow] = []
        self.box = QVBoxLayout()
        self.empty = QLabel(EMPTY)  # an empty box says what goes in it
        self.empty.setWordWrap(True)
        self.empty.setAccessibleName("No downloads")
        self.box.addWidget(self.empty)
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
            if row.matches(repo, paths=repo_file.file.paths):
                row.repo_file = row.repo_file or repo_file
                if row.state in STOPPED:
                    row.resume()
                return row
        return self._add(DownloadRow(self, repo, repo_file))

    def request(self, repo: str, *, quant: str | None = None, filename: str | None = None,
                on_row: Callable[[DownloadRow], None] | None = None) -> None:  # fmt: skip
        """Queue the file of ``repo`` named by ``filename`` or ``quant`` (the Advisor's "Download …
        and chat"): list the repo, then queue it; ``on_row`` gets the row. When the listing fails
        (offline, say) the row is queued all the same, waiting or failed, with Retry and Remove."""
        from app.core.hub.repo import list_gguf_files, select_file

        for row in self.rows:
            if row.matches(repo, quant=quant, filename=filename):
                if row.state in STOPPED:
                    row.resume()
                if on_row is not None:
                    on_row(row)
                return

        def work(report: Any, cancel: Any) -> Any:
            return select_file(list_gguf_files(repo), quant=quant, filename=filename)

        def found(repo_file: Any) -> None:
            row = self.enqueue(repo, repo_file)
            if on_row is not None:
                on_row(row)

        def failed(message: str, hint: str, cancelled: bool) -> None:
            want = {"quant": quant, "filename": filename}
            row = DownloadRow(self, repo, None, {k: v for k, v in want.items() if v})
            row.show_failure(message, hint, cancelled)
            self._add(row, start=False)
            if on_row is not None:
                on_row(row)

        start_worker(work, owner=self, on_return=found, on_error=failed)

    def _add(self, row: DownloadRow, *, start: bool = True) -> DownloadRow:
        self.rows.append(row)
        self.box.insertWidget(self.box.count() - 1, row)
        self.empty.hide()
        if start:
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
        row.retry_timer.stop()
        if row.task is not None and row.state in ACTIVE:
            row.task.discard()  # a waiting or failed row has nothing running; an active one stops
        self.rows.remove(row)
        self.box.removeWidget(row)
        row.deleteLater()
        self.empty.setVisible(not self.rows)

    def shutdown(self) -> None:
        """Stop every pull (their partial files stay), every retry by itself, and drop what is queued."""
        for row in self.rows:
            row.retry_timer.stop()
            row.cancel()
