"""The replay tool: rebuilds runs from the event log into timelines, votes, usage and stage times."""
