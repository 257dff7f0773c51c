/* The C kernel of Veil's HE engine: batched modular arithmetic over gmpy2's mpz.
 *
 * Why: the engine's hot loops are chains of big-integer products (fixed-base
 * exponentiation for every encryption, group products for histograms and bucketed
 * multi-exponentiation, element-wise products for ct + ct). From Python each 2048-bit
 * product costs ~1.9 us (a multiply, a division-based reduction, a temporary object);
 * here it is one GMP multiply and one Montgomery reduction (~1.2 us), and the GIL is
 * released so threads share the work and the tables.
 *
 * Montgomery form: with R = 2**(64 * limbs(m)), x is stored as x*R mod m, and
 * mont(a, b) = a*b/R mod m. A chain that starts from a value in *standard* form and only
 * multiplies by table entries in Montgomery form stays in standard form
 * (mont(a, y*R) = a*y), so no conversion is ever needed on the way out. Every value is
 * kept fully reduced (< m): REDC of a product of two values < m is < 2m, and one
 * conditional subtraction brings it back.
 *
 * Only GMP's public, documented functions are used (mpn_mul_n, mpn_addmul_1, mpn_add_n,
 * mpn_sub_n, mpn_cmp, mpn_tdiv_qr and a few mpz ones), called through pointers taken from
 * the libgmp that gmpy2 itself loaded (``load(path)``): no GMP headers and no link step.
 * Results are gmpy2 mpz made through gmpy2's own C API (the ``gmpy2._C_API`` capsule) and
 * filled with the public mpz_limbs_write/mpz_limbs_finish. The Python side
 * (veil.crypto._native) checks the kernel against gmpy2 before it is ever used.
 *
 *   load(path)                               bind to the libgmp at path
 *   mont_row, mont_chain, crt_join           fixed-base chains (_gmp_fixedbase.c)
 *   mulmod, group_product                    batches of products (_gmp_batch.c)
 */
#include <dlfcn.h>

#include "_gmp.h"

GmpApi G;

#define BIND(field, name)                                   \
    do {                                                    \
        *(void **)(&G.field) = dlsym(h, name);              \
        if (G.field == NULL) {                              \
            PyErr_Format(PyExc_OSError, "%s lacks %s", path, name); \
            return NULL;                                    \
        }                                                   \
    } while (0)

static PyObject *load(PyObject *self, PyObject *arg) {
    const char *path = PyUnicode_AsUTF8(arg);
    if (path == NULL) return NULL;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        PyErr_Format(PyExc_OSError, "cannot open %s: %s", path, dlerror());
        return NULL;
    }
    G.ready = 0;
    BIND(mul_n, "__gmpn_mul_n");
    BIND(addmul_1, "__gmpn_addmul_1");
    BIND(add_n, "__gmpn_add_n");
    BIND(sub_n, "__gmpn_sub_n");
    BIND(cmp, "__gmpn_cmp");
    BIND(tdiv_qr, "__gmpn_tdiv_qr");
    BIND(limbs_write, "__gmpz_limbs_write");
    BIND(limbs_finish, "__gmpz_limbs_finish");
    BIND(z_sub, "__gmpz_sub");
    BIND(z_mul, "__gmpz_mul");
    BIND(z_fdiv_r, "__gmpz_fdiv_r");
    BIND(z_addmul, "__gmpz_addmul");
    BIND(z_set, "__gmpz_set");
    BIND(z_init, "__gmpz_init");
    BIND(z_clear, "__gmpz_clear");
    BIND(z_set_ui, "__gmpz_set_ui");
    void **api = (void **)PyCapsule_Import("gmpy2._C_API", 0);
    if (api == NULL) return NULL;
    G.mpz_type = (PyTypeObject *)api[0];
    *(void **)(&G.new_mpz) = api[11];
    /* the object layout this file reads (gmpy2 2.1-2.3): refuse anything else rather
     * than read the wrong memory; the Python loops then run */
    if (G.mpz_type->tp_basicsize != (Py_ssize_t)sizeof(MPZ_Object)
        || strcmp(G.mpz_type->tp_name, "gmpy2.mpz") != 0) {
        PyErr_Format(PyExc_OSError, "unexpected gmpy2 mpz layout (%s, %zd bytes)",
                     G.mpz_type->tp_name, G.mpz_type->tp_basicsize);
        return NULL;
    }
    G.ready = 1;
    Py_RETURN_NONE;
}

int get_mod(PyObject *obj, Mod *m) {
    if (!G.ready) {
        PyErr_SetString(PyExc_RuntimeError, "call load(libgmp path) first");
        return 0;
    }
    if (Py_TYPE(obj) != G.mpz_type) {
        PyErr_SetString(PyExc_TypeError, "modulus must be a gmpy2 mpz");
        return 0;
    }
    mpz_struct *z = &((MPZ_Object *)obj)->z;
    if (z->size <= 0 || !(z->d[0] & 1)) {
        PyErr_SetString(PyExc_ValueError, "modulus must be odd and positive");
        return 0;
    }
    m->d = z->d;
    m->n = z->size;
    limb inv = m->d[0];  /* Newton: each step doubles the correct low bits (3 -> 96) */
    for (int i = 0; i < 5; i++) inv *= 2 - m->d[0] * inv;
    m->ninv = (limb)0 - inv;
    return 1;
}

/* r = a * b / R mod m for a, b < m (r may alias a); t has 2n limbs of scratch. */
void mont_mul(limb *r, const limb *a, const limb *b, const Mod *m, limb *t) {
    long n = m->n;
    G.mul_n(t, a, b, n);
    limb *u = t;
    for (long j = 0; j < n; j++, u++) u[0] = G.addmul_1(u, m->d, n, u[0] * m->ninv);
    limb cy = G.add_n(r, u, u - n, n);  /* u = t + n: the high half; t[0..n) the carries */
    if (cy || G.cmp(r, m->d, n) >= 0) G.sub_n(r, r, m->d, n);
}

/* x (any non-negative mpz, any size) * R**shift mod m into n limbs (shift 0 or 1). */
int to_residue(limb *out, const mpz_struct *x, int shift, const Mod *m) {
    long n = m->n, xs = x->size, len = xs + (shift ? n : 0);
    if (xs < 0) {
        PyErr_SetString(PyExc_ValueError, "negative value");
        return 0;
    }
    memset(out, 0, n * sizeof(limb));
    if (xs == 0) return 1;
    limb *num = PyMem_Calloc(len + 1, sizeof(limb)), *q = PyMem_Calloc(len + 1, sizeof(limb));
    if (num == NULL || q == NULL) {
        PyMem_Free(num);
        PyMem_Free(q);
        PyErr_NoMemory();
        return 0;
    }
    memcpy(num + (shift ? n : 0), x->d, xs * sizeof(limb));
    if (len < n) memcpy(out, num, len * sizeof(limb));
    else G.tdiv_qr(q, out, 0, num, len, m->d, n);
    PyMem_Free(num);
    PyMem_Free(q);
    return 1;
}

int int64_buffer(PyObject *obj, Py_buffer *b, int ndim, const char *what) {
    if (PyObject_GetBuffer(obj, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0) return 0;
    if (b->ndim != ndim || b->itemsize != 8 || (strcmp(b->format, "q") && strcmp(b->format, "l"))) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous %d-D int64 array", what, ndim);
        PyBuffer_Release(b);
        return 0;
    }
    return 1;
}

/* Borrowed mpz items of a list/tuple (NULL + TypeError if one is not an mpz). */
PyObject *mpz_seq(PyObject *obj, const char *what) {
    PyObject *fast = PySequence_Fast(obj, what);
    if (fast == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        if (Py_TYPE(PySequence_Fast_GET_ITEM(fast, i)) != G.mpz_type) {
            PyErr_Format(PyExc_TypeError, "%s: items must be gmpy2 mpz", what);
            Py_DECREF(fast);
            return NULL;
        }
    }
    return fast;
}

/* New mpz objects (value 0) for the results, made while the GIL is held. */
PyObject *new_results(Py_ssize_t n) {
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        MPZ_Object *r = G.new_mpz(NULL);
        if (r == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, i, (PyObject *)r);
    }
    return out;
}

/* ``count`` new mpz from consecutive n-limb little-endian values (normalised by GMP). */
PyObject *results_from_limbs(const limb *v, Py_ssize_t count, long n) {
    PyObject *out = new_results(count);
    for (Py_ssize_t i = 0; out != NULL && i < count; i++) {
        memcpy(G.limbs_write(RZ(out, i), n), v + i * n, n * sizeof(limb));
        G.limbs_finish(RZ(out, i), n);
    }
    return out;
}

/* The set-up of an element-wise batch: two equally long sequences of mpz (new
 * references in *a, *b) and len(a) fresh results in *out; 0 and nothing held on error. */
int pair_batch(PyObject *a_in, PyObject *b_in, const char *what, PyObject **a, PyObject **b,
               PyObject **out) {
    *a = mpz_seq(a_in, what);
    *b = *a ? mpz_seq(b_in, what) : NULL;
    *out = NULL;
    if (*b != NULL && PySequence_Fast_GET_SIZE(*a) != PySequence_Fast_GET_SIZE(*b))
        PyErr_Format(PyExc_ValueError, "%s: the two sequences differ in length", what);
    else if (*b != NULL)
        *out = new_results(PySequence_Fast_GET_SIZE(*a));
    if (*out == NULL) {
        Py_CLEAR(*a);
        Py_CLEAR(*b);
        return 0;
    }
    return 1;
}

static PyMethodDef methods[] = {
    {"load", load, METH_O, "load(path): bind to the libgmp at path (the one gmpy2 loaded)"},
    {"mont_row", mont_row, METH_VARARGS,
     "mont_row(m, step, size, standard=False) -> bytes: step**d (* R) mod m for d < size"},
    {"mont_chain", mont_chain, METH_VARARGS,
     "mont_chain(m, rows, digits, start=None, first=None) -> [start[i] * prod_j entry mod m]"},
    {"mulmod", mulmod, METH_VARARGS, "mulmod(a, b, m) -> [a[i] * b[i] % m] (GIL released)"},
    {"group_product", group_product, METH_VARARGS,
     "group_product(a, groups_int64, k, m) -> k products mod odd m (groups < 0 skipped)"},
    {"crt_join", crt_join, METH_VARARGS,
     "crt_join(a, b, m1, m2, inv) -> [b + m2 * ((a - b) * inv mod m1)] (Garner)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_gmpkernel", "Fixed-base exponentiation in Montgomery form.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__gmpkernel(void) { return PyModule_Create(&module); }
