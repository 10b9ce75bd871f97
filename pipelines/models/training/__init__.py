"""Training: one lifecycle (lifecycle.py) and a trainer per kind of model. Only the train
step imports this package; scoring and publishing read champions through the registry and
`pipelines.models.artifacts`."""
