"""History: closed klines in SQLite, exports to Parquet, DuckDB queries over both."""
