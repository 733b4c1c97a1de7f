"""The admin listener: REST API under ``/api/v1``, ``/metrics`` and the console."""
