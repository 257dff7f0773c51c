"""Job files, their steps, and ``veil run``."""
