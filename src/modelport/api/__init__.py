"""Thin HTTP adapters over the domain services; no domain logic lives here."""
