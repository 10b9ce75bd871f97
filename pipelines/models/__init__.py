"""Model training and management: Spark ML pipelines tracked and registered in MLflow."""
