"""Where flows' workers run: local processes, or Kubernetes. ``Runtime`` is the seam."""

from hookgate.runtime.base import Runtime, WorkerStatus

__all__ = ["Runtime", "WorkerStatus"]
