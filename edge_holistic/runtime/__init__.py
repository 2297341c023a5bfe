"""Interpreters and the model registry."""
from .interpreter import RuntimeMissingError, TfliteModel, backend, backend_version
from .registry import ModelError, ModelSpec, Registry, auto_threads, resolve_precision

__all__ = [
    "ModelError", "ModelSpec", "Registry", "RuntimeMissingError", "TfliteModel",
    "auto_threads", "backend", "backend_version", "resolve_precision",
]
