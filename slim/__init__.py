"""slimtrace: make container images small by tracing what the application really uses."""

__version__ = "0.1.0"
