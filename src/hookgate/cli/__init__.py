"""The ``hookgate`` command line: ``serve`` runs a gateway, everything else talks to one."""
