"""Drift: compact distributions of features and scores (binned, JSON) and how far two of them are."""
