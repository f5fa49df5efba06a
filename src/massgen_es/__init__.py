"""massgen-es: an event-sourced re-implementation of MassGen's multi-agent protocol over NATS JetStream."""

__version__ = "0.1.0"
