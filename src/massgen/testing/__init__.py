"""Test kit shipped with massgen-es: a real nats-server helper and a wire-level OpenAI fake."""
