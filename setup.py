"""Build hook for the optional C kernel (everything else is in pyproject.toml).

``veil.crypto._gmpkernel`` only needs a C compiler and the Python headers: it finds GMP
at run time in the library gmpy2 loaded. ``veil.protocols.psi._okvs`` (the OKVS
elimination of RR22-PSI) and ``veil.protocols.psi._vole`` (GF(2^128) products and the
silent VOLE's code) need only the compiler. If one cannot be built, the install
still succeeds and Veil uses its pure-Python kernels (same results, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "veil.crypto._gmpkernel",
            [
                "src/veil/crypto/_gmpkernel.c",
                "src/veil/crypto/_gmp_fixedbase.c",
                "src/veil/crypto/_gmp_batch.c",
            ],
            depends=["src/veil/crypto/_gmp.h"],
            optional=True,
            extra_compile_args=["-O2", "-fvisibility=hidden"],
        ),
        Extension(
            "veil.protocols.psi._okvs",
            ["src/veil/protocols/psi/_okvs.c"],
            optional=True,
            extra_compile_args=["-O2", "-fvisibility=hidden"],
        ),
        Extension(
            "veil.protocols.psi._vole",
            ["src/veil/protocols/psi/_vole.c"],
            optional=True,
            extra_compile_args=["-O2", "-fvisibility=hidden"],
        ),
    ]
)
