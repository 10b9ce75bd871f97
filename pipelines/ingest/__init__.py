"""Ingest: landing XDM files -> bronze Delta tables (+ quarantine) -> silver identity and events."""
