"""XDM shapes: the schemas the pipeline reads, and identity helpers."""
