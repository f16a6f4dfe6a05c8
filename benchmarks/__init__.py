"""Overhead measurements for djtrace (run as scripts, not imported by the package)."""
