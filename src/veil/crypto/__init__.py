"""Pure cryptographic primitives (no I/O): HE schemes, curves, randomness."""
