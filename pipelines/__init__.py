"""Nightly profile enrichment on Spark and Delta Lake.

XDM ExperienceEvents and Individual Profiles go in; model-based attributes per person
(propensity scores, percentiles, buckets) come out as a merge-maintained Delta table.
Each step lives in its own sub-package: ingest, quality, features, models, scoring,
publish; ops holds the run ledger and the run summary.
"""

__version__ = "0.1.0"
