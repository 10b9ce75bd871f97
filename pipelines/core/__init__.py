"""The bottom layer, imported by every step and importing none: configuration, errors,
the run context, Delta table helpers, the Spark session, shared column expressions,
reproducible sums, plots and the clock."""
