"""Hookgate: permanent webhook URLs for integration flows, async (durable queue) or sync (proxy).

Kept free of imports: the SQLite writer process (``hookgate.store.sqlite.writer``) starts
from here and should not pay for the gateway's modules.
"""

__version__ = "0.1.0"
