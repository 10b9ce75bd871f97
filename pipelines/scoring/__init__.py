"""Scoring: the champion model applied to every eligible person, with percentiles and buckets."""
