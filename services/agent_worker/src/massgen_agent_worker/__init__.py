"""The agent worker service: pulls agent turns from the work queue, calls the LLM provider (streaming,
retries, timeouts, usage and cost), runs the tool rounds through the MCP broker and the executor, and
serves the local models."""
