"""Where flows and queued requests live. ``Store`` is the seam; see ``base.py``.

Kept free of imports, like ``hookgate/__init__.py``, for the SQLite writer process.
"""
