"""The local OpenAI-compatible server: other programs use the model chosen here.

``run`` binds and starts it (``tailorlm serve``, the window's Server panel), ``http_app`` is the
ASGI application (Starlette behind uvicorn), ``served_model`` the queue in front of the engine's
model process, ``completions`` the two generating endpoints. No Qt here: the window drives it
through plain calls.
"""
