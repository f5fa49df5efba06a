"""The agent_worker service: pulls agent turns from the work queue and calls the LLM."""
