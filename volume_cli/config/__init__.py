"""Strict configuration: dependency groups, model sources, project files."""
