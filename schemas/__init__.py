"""The JSON Schemas batchkling ships; read them with ``batchkling.manifest.schemas.load_schema``."""
