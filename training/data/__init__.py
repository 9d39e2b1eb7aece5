"""Data in: the input contract, importers of public data sets, outcome labels, training snapshots and exposure sets."""
