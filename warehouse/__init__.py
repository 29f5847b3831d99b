"""The DuckDB warehouse: one schema, one writer at a time, any number of short readers."""
