"""The simulator: synthetic customer journeys and experiments, with their ground truth kept apart."""
