"""The Chat panel's left column: the stored conversations, newest first, with New and Delete.

A view only: the panel hands it the list from the ChatStore and hears which one the user picked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class ConversationList(QWidget):
    # conversation id: the user picked a stored chat
    selected = Signal(int)
    # the user wants an empty chat (the New chat button; the panel's Ctrl+N too)
    new_requested = Signal()
    # conversation id: the user confirmed deleting it
    delete_confirmed = Signal(int)

    def __init__(self) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.list = QListWidget()
        self.list.setAccessibleName("Conversations")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # long titles elide
        heading = QLabel("<b>&Conversations</b>")
        heading.setBuddy(self.list)
        lay.addWidget(heading)
        lay.addWidget(self.list, 1)
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

    def show_conversations(self, conversations: Sequence[Any], current_id: int | None) -> None:
        """Fill the list (ChatStore Conversation objects) and mark ``current_id``, quietly."""
        self.list.blockSignals(True)
        self.list.clear()
        for conv in conversations:
            item = QListWidgetItem(conv.title)
            item.setData(Qt.ItemDataRole.UserRole, conv.id)
            item.setToolTip(f"{conv.title}\n{Path(conv.model).name}")
            self.list.addItem(item)
            if conv.id == current_id:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)

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

    @Slot()
    def confirm_delete(self) -> None:
        item = self.list.currentItem()
        if item is None or not self.list.isEnabled():
            return
        answer = QMessageBox.question(self, "Delete chat", f"Delete “{item.text()}” and all its messages?")
        if answer == QMessageBox.StandardButton.Yes:
            self.delete_confirmed.emit(int(item.data(Qt.ItemDataRole.UserRole)))
