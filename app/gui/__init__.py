"""The PySide6 desktop app: thin views over ``app.core`` and ``app.engine``; long work runs on
worker threads (``workers.py``) and reports back through signals."""
