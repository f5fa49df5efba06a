"""MassGen-ES executor service."""
