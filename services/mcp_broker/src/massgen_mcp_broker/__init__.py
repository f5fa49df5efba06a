"""MassGen-ES MCP broker service."""
