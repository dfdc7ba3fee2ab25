"""Bench stage: Ollama and native sentence-transformers measured side by side (TD-073)."""

__version__ = "0.1.0"
