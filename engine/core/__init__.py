"""Lowest layer: no torch, imports nothing else of engine."""
