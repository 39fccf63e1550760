"""Surveys, metrics and reports."""
