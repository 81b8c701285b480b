"""Exports, run zips and reports."""
