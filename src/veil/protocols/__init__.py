"""Multi-party protocols: one module each, one function per role."""
