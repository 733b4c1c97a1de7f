"""The Kubernetes runtime: a Service per flow, a Deployment for sync, Jobs on demand for async.

``specs`` turns a flow into objects (pure), ``reconciler`` converges the cluster to them,
``lease`` elects the one replica that writes, ``client`` is the only lightkube importer.
"""

from hookgate.runtime.kubernetes.client import connect
from hookgate.runtime.kubernetes.runtime import KubernetesRuntime
from hookgate.runtime.kubernetes.specs import render

__all__ = ["KubernetesRuntime", "connect", "render"]
