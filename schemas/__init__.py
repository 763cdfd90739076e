"""The JSON Schemas batchkling ships; read them with ``batchkling.schema_files.load_schema``."""
