"""The one feature definition: point-in-time features shared by training, batch and online scoring."""
