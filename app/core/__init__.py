"""Everything that is not Qt: hardware, model reading, memory estimation, recommendation.

Nothing under ``app.core`` may import PySide6 (checked by ``tests/test_layers.py``).
"""
