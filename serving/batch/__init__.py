"""Batch scoring: the active population in chunks, local and Dask engines, atomic Parquet output."""
