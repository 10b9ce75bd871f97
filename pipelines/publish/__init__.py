"""Publish: scored attributes merged onto one current row per person (Change Data Feed on)."""
