"""The Kubernetes runtime: a Service per flow, a Deployment for sync, Jobs on demand for async.

``specs`` turns a flow into objects (pure: ``hookgate k8s render`` needs no cluster client),
``reconciler`` converges the cluster to them, ``lease`` elects the one replica that writes,
``client`` is the only lightkube importer (the ``kubernetes`` extra). Import the modules
themselves: this package imports nothing, so rendering works on a base install.
"""
