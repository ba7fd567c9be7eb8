"""Helpers shared by tests (certificates, ...); not fixtures, not tests."""
