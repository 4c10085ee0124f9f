"""Prompt templates and their renderer."""
