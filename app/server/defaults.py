"""The server's defaults, light to import: the CLI's parser shows them without loading the web
stack (Starlette, uvicorn) for every command."""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080  # llama-server's: clients set up for a local llama.cpp server find it there
API_KEY_ENV = "TAILORLM_API_KEY"  # a key in the environment stays out of the process list
