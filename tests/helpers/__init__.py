"""Helpers shared by the test suite (import them as tests.helpers.<module>)."""
