"""Federated learning algorithms, written once with one function per role."""
