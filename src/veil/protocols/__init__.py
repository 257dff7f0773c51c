"""Multi-party protocols: one module each, one function per role.

Public API:

- :mod:`veil.protocols.psi`: private set intersection (``run_psi``, ``PsiParams``,
  ``PsiResult``, ``Protocol``; protocols ``psi.ecdh``, ``psi.kkrt``, ``psi.rr22``).
- :mod:`veil.protocols.interconnect`: ECDH-PSI over the PPCA 9-2023 interconnection
  wire (``run_interconnect_psi``, ``IcPsiOptions``).
"""
