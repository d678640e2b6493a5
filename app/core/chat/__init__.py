"""Conversations: the SQLite store and chat templates."""
