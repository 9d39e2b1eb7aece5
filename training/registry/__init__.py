"""The model bundle (pure) and its MLflow side: registration, look-up, run tracking and promotion."""
