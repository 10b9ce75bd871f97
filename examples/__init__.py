"""Examples to copy: a programmatic custom model."""
