"""The orchestrator service: MassGen's coordination protocol as a pure decision core (``decide``, a
fold of each run's events) and a thin shell (``service``) that appends its decisions atomically,
requests agent turns and turns deadlines into events."""
