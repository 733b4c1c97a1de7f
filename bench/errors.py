"""Why a benchmark produced no result.

::

    BenchFailure           a scenario could not produce an honest figure
    ├── ToolMissing        wrk or nginx is not installed (the message is the install command)
    ├── PortInUse          something already answers on the port a server was to use
    ├── ServerDown         a server exited or did not become ready in time
    └── RunErrors          the load run saw errors (socket errors, timeouts, HTTP >= 400)
"""

from __future__ import annotations


class BenchFailure(Exception):
    """A scenario failed; the message says what to look at."""


class ToolMissing(BenchFailure):
    pass


class PortInUse(BenchFailure):
    pass


class ServerDown(BenchFailure):
    pass


class RunErrors(BenchFailure):
    pass
