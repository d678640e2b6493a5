"""The Chat panel's left column: the stored conversations, newest first, each with the model that
wrote it; a search box above them; New, Delete, and Rename and Export in the context menu.

A view only: the panel hands it the list from the ChatStore (a search's result while the box holds
text) and hears what the user picked or asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QPoint, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.chat.export import FORMATS, suggested_file_name
from app.core.chat.model_ref import conversation_model

TITLE_ROLE = Qt.ItemDataRole.UserRole + 1  # a row shows title and model; this is the title alone


class ConversationList(QWidget):
    # conversation id: the user picked a stored chat
    selected = Signal(int)
    # the user wants an empty chat (the New chat button; the panel's Ctrl+N too)
    new_requested = Signal()
    # conversation id: the user confirmed deleting it
    delete_confirmed = Signal(int)
    # (conversation id, new title): the user renamed a chat
    rename_requested = Signal(int, str)
    # (conversation id, format "md" | "json", file path): the user wants the chat in that file
    export_requested = Signal(int, str, str)
    # the search box's text changed (the panel lists what matches)
    search_changed = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.list = QListWidget()
        self.list.setAccessibleName("Conversations")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # long titles elide
        self.list.setAlternatingRowColors(True)  # a row is two lines, title and model: rows stand apart
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        heading = QLabel("<b>&Conversations</b>")
        heading.setBuddy(self.list)
        self.search = QLineEdit()
        self.search.setAccessibleName("Search conversations")
        self.search.setPlaceholderText("Search chats")
        self.search.setToolTip("Show the chats whose title or messages hold every word typed here")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.search_changed)
        lay.addWidget(heading)
        lay.addWidget(self.search)
        lay.addWidget(self.list, 1)
        self.empty = QLabel()
        self.empty.setAccessibleName("No conversations")
        self.empty.setWordWrap(True)
        lay.addWidget(self.empty)
        row = QHBoxLayout()
        self.new_button = QPushButton("New chat")
        self.new_button.setAccessibleName("Start a new chat")
        self.new_button.setToolTip("New chat (Ctrl+N)")
        self.new_button.clicked.connect(self.new_requested)
        self.delete_button = QPushButton("Delete")
        self.delete_button.setAccessibleName("Delete the selected chat")
        self.delete_button.setToolTip("Delete the selected chat (Del)")
        self.delete_button.clicked.connect(self.confirm_delete)
        row.addWidget(self.new_button)
        row.addWidget(self.delete_button)
        lay.addLayout(row)
        self.list.currentItemChanged.connect(self._on_current)
        QShortcut(QKeySequence.StandardKey.Delete, self.list, self.confirm_delete,
                  context=Qt.ShortcutContext.WidgetShortcut)  # fmt: skip
        QShortcut(QKeySequence(Qt.Key.Key_F2), self.list, self.ask_rename,
                  context=Qt.ShortcutContext.WidgetShortcut)  # fmt: skip

    def show_conversations(self, conversations: Sequence[Any], current_id: int | None) -> None:
        """Fill the list (ChatStore Conversation objects) and mark ``current_id``, quietly."""
        self.list.blockSignals(True)
        self.list.clear()
        for conv in conversations:
            ref = conversation_model(conv)
            model = ref.label if ref is not None else ""
            item = QListWidgetItem(f"{conv.title}\n{model}" if model else conv.title)
            item.setData(Qt.ItemDataRole.UserRole, conv.id)
            item.setData(TITLE_ROLE, conv.title)
            item.setToolTip(f"{conv.title}\n{model}\n{conv.model}".rstrip())
            self.list.addItem(item)
            if conv.id == current_id:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        query = self.search.text().strip()
        self.empty.setText(f"No chat holds “{query}”." if query and not conversations else "")
        self.empty.setVisible(bool(self.empty.text()))

    def title(self, row: int) -> str:
        item = self.list.item(row)
        return str(item.data(TITLE_ROLE)) if item is not None else ""

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return int(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def clear_selection(self) -> None:
        self.list.blockSignals(True)
        self.list.setCurrentRow(-1)
        self.list.blockSignals(False)

    def set_busy(self, busy: bool) -> None:
        """While an answer streams the chat cannot change under it."""
        for w in (self.list, self.new_button, self.delete_button):
            w.setEnabled(not busy)

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_current(self, item: QListWidgetItem | None, _previous: Any = None) -> None:
        if item is not None:
            self.selected.emit(int(item.data(Qt.ItemDataRole.UserRole)))

    @Slot(QPoint)
    def _menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None or not self.list.isEnabled():
            return
        self.list.setCurrentItem(item)
        menu = self.context_menu()
        menu.exec(self.list.viewport().mapToGlobal(pos))
        menu.deleteLater()

    def context_menu(self) -> QMenu:
        """Rename, Export (Markdown, JSON) and Delete for the selected chat."""
        menu = QMenu(self)
        menu.addAction("Rename…", self.ask_rename)
        for fmt, name in FORMATS.items():
            menu.addAction(f"Export as {name}…", lambda f=fmt: self.ask_export(f))
        menu.addSeparator()
        menu.addAction("Delete…", self.confirm_delete)
        return menu

    def ask_export(self, fmt: str) -> None:
        """Ask where to save the selected chat as ``fmt`` ("md" | "json"), and ask for it."""
        cid = self.current_id()
        if cid is None:
            return
        name = suggested_file_name(self.title(self.list.currentRow()), fmt)
        path, _ = QFileDialog.getSaveFileName(self, "Export chat", name, f"{FORMATS[fmt]} (*.{fmt})")
        if path:
            self.export_requested.emit(cid, fmt, path)

    @Slot()
    def ask_rename(self) -> None:
        cid = self.current_id()
        if cid is None or not self.list.isEnabled():
            return
        old = self.title(self.list.currentRow())
        title, ok = QInputDialog.getText(self, "Rename chat", "Title:", QLineEdit.EchoMode.Normal, old)
        if ok and title.strip() and title.strip() != old:
            self.rename_requested.emit(cid, title.strip())

    @Slot()
    def confirm_delete(self) -> None:
        cid = self.current_id()
        if cid is None or not self.list.isEnabled():
            return
        title = self.title(self.list.currentRow())
        answer = QMessageBox.question(self, "Delete chat", f"Delete “{title}” and all its messages?")
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_confirmed.emit(cid)
