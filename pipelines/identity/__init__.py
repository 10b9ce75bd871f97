"""People from identities: the identity graph that ingest builds and publish and privacy read."""
