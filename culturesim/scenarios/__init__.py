"""Scenario templates, the built-in library, cultures, personas and social graphs."""
