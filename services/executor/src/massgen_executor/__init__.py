"""The executor service: runs agents' ``execute_command`` calls in Docker sandboxes (one per agent per
run, no network, limits, non-root) or locally with limits; command filters; full outputs and produced
files to the Object Store."""
