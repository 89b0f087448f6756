"""Helpers shared by the test suites (one place for what several test files need)."""
