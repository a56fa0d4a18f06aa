"""The build stages, called in order by slim/pipeline.py: tracing (with exercise and lookups), closure,
assemble, verify; sbom, sizes and volatility serve them."""
