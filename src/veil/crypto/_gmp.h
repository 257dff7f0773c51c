/* Shared declarations of the C kernel (_gmpkernel.c, _gmp_fixedbase.c, _gmp_batch.c):
 * GMP's and gmpy2's stable public ABI, declared here so that no GMP header or link step
 * is needed; the function pointers are bound at run time by load() in _gmpkernel.c. */
#ifndef VEIL_GMP_H
#define VEIL_GMP_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef uint64_t limb;
typedef struct {
    int alloc;
    int size;
    limb *d;
} mpz_struct;

typedef struct {
    PyObject_HEAD
    mpz_struct z;
    Py_hash_t hash_cache;
} MPZ_Object;

typedef struct {
    void (*mul_n)(limb *, const limb *, const limb *, long);
    limb (*addmul_1)(limb *, const limb *, long, limb);
    limb (*add_n)(limb *, const limb *, const limb *, long);
    limb (*sub_n)(limb *, const limb *, const limb *, long);
    int (*cmp)(const limb *, const limb *, long);
    void (*tdiv_qr)(limb *, limb *, long, const limb *, long, const limb *, long);
    limb *(*limbs_write)(mpz_struct *, long);
    void (*limbs_finish)(mpz_struct *, long);
    void (*z_sub)(mpz_struct *, const mpz_struct *, const mpz_struct *);
    void (*z_mul)(mpz_struct *, const mpz_struct *, const mpz_struct *);
    void (*z_fdiv_r)(mpz_struct *, const mpz_struct *, const mpz_struct *);
    void (*z_addmul)(mpz_struct *, const mpz_struct *, const mpz_struct *);
    void (*z_set)(mpz_struct *, const mpz_struct *);
    void (*z_init)(mpz_struct *);
    void (*z_clear)(mpz_struct *);
    void (*z_set_ui)(mpz_struct *, unsigned long);
    MPZ_Object *(*new_mpz)(void *);
    PyTypeObject *mpz_type;
    int ready;
} GmpApi;

extern GmpApi G;

/* The modulus: an odd positive mpz; its limbs and -m^-1 mod 2^64. */
typedef struct {
    const limb *d;
    long n;
    limb ninv;
} Mod;

/* Every function below sets a Python error and returns 0/NULL on failure. */
int get_mod(PyObject *obj, Mod *m);
void mont_mul(limb *r, const limb *a, const limb *b, const Mod *m, limb *t);
int to_residue(limb *out, const mpz_struct *x, int shift, const Mod *m);
int int64_buffer(PyObject *obj, Py_buffer *b, int ndim, const char *what);
PyObject *mpz_seq(PyObject *obj, const char *what);
PyObject *new_results(Py_ssize_t n);
PyObject *results_from_limbs(const limb *v, Py_ssize_t count, long n);
int pair_batch(PyObject *a_in, PyObject *b_in, const char *what, PyObject **a, PyObject **b,
               PyObject **out);

#define ZP(seq, i) (&((MPZ_Object *)PySequence_Fast_GET_ITEM((seq), (i)))->z)

#define RZ(list, i) (&((MPZ_Object *)PyList_GET_ITEM((list), (i)))->z)


PyObject *mont_row(PyObject *self, PyObject *args);
PyObject *mont_chain(PyObject *self, PyObject *args);
PyObject *crt_join(PyObject *self, PyObject *args);
PyObject *mulmod(PyObject *self, PyObject *args);
PyObject *group_product(PyObject *self, PyObject *args);
#endif
