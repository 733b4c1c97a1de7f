"""Destinations other than the flow's own workers: an HTTP(S) URL, RabbitMQ, NATS JetStream.

``base.Sender`` is the seam; one module per kind implements it, each importing its client
library (httpx, aio-pika, nats-py) and nothing else does.
"""
