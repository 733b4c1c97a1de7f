"""Where flows' workers run: local processes, or Kubernetes. ``Runtime`` is the seam."""

from hookgate.runtime.base import Endpoint, Runtime, WorkerStatus

__all__ = ["Endpoint", "Runtime", "WorkerStatus"]
