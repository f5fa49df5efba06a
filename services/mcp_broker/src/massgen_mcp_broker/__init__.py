"""The MCP broker service: owns the MCP server sessions (stdio, streamable HTTP), shared across runs;
tool discovery, permission and argument checks, calls with timeouts, retries and circuit breakers,
secrets from the secret store, workspace snapshots."""
