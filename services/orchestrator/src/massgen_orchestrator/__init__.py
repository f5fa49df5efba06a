"""The orchestrator service: MassGen's coordination protocol as a pure core (``decide``) and a shell (``service``)."""
