"""The embedded store: ``store`` (the async facade), ``writer`` (the writer process's group
commit), ``writes`` (what it runs), ``protocol`` (the messages between them), ``reads``
and ``schema``.

Kept free of imports, like ``hookgate/__init__.py``, for the SQLite writer process.
"""
