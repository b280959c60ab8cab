"""Prometheus metrics (per-app registry; aggregated across ``--workers`` processes)."""
