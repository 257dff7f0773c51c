/* Fixed-base exponentiation in Montgomery form, for HE encryption (see _fixedbase.py).
 *
 * Why: an OU randomiser h**r (224-bit r, 12-bit windows) is a chain of 18 products of
 * table entries mod a 2048-bit n. From Python each product costs ~1.9 us (a multiply, a
 * division-based reduction, a temporary object); here it is one GMP multiply and one
 * Montgomery reduction (~1.2 us), the table entries are prefetched one element ahead,
 * and the GIL is released for the whole batch.
 *
 * Montgomery form: with R = 2**(64 * limbs(m)), x is stored as x*R mod m, and
 * mont(a, b) = a*b/R mod m. A chain that starts from a value in *standard* form and only
 * multiplies by table entries in Montgomery form stays in standard form
 * (mont(a, y*R) = a*y), so no conversion is ever needed on the way out. Every value is
 * kept fully reduced (< m): REDC of a product of two values < m is < 2m, and one
 * conditional subtraction brings it back.
 *
 * Only GMP's public, documented functions are used (mpn_mul_n, mpn_addmul_1, mpn_add_n,
 * mpn_sub_n, mpn_cmp, mpn_tdiv_qr and a few mpz ones), called through pointers taken from the
 * libgmp that gmpy2 itself loaded (``load(path)``): no GMP headers and no link step, and
 * results are returned as gmpy2 mpz made through gmpy2's own C API (the ``gmpy2._C_API``
 * capsule) and filled with the public mpz_limbs_write/mpz_limbs_finish. The Python side
 * (veil.crypto._native) checks the kernel against gmpy2 before it is ever used.
 *
 *   load(path)                        bind to the libgmp at path
 *   mont_row(m, step, size, standard=False) -> bytes
 *       [step**d * R mod m for d < size] (limbs(m) limbs each); without the R if standard
 *   mont_chain(m, rows, digits, start=None, first=None) -> list[mpz]
 *       for each row i of digits (count, w): start[i] (or 1) * prod_j step_j**digits[i, j]
 *       mod m, where rows[j] is a mont_row buffer; ``first``, row 0 in standard form,
 *       saves a product: its entry is the start
 *   crt_join(a, b, m1, m2, inv) -> list[mpz]
 *       Garner's join of residues mod m1 and m2 (inv = m2^-1 mod m1), for the key
 *       owner's CRT encryption (mpz_sub/mul/fdiv_r/addmul)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
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

static struct {
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
} G;

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
    G.ready = 1;
    Py_RETURN_NONE;
}

/* The modulus: an odd positive mpz; its limbs and -m^-1 mod 2^64. */
typedef struct {
    const limb *d;
    long n;
    limb ninv;
} Mod;

static int get_mod(PyObject *obj, Mod *m) {
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
static void mont_mul(limb *r, const limb *a, const limb *b, const Mod *m, limb *t) {
    long n = m->n;
    G.mul_n(t, a, b, n);
    limb *u = t;
    for (long j = 0; j < n; j++, u++) u[0] = G.addmul_1(u, m->d, n, u[0] * m->ninv);
    limb cy = G.add_n(r, u, u - n, n);  /* u = t + n: the high half; t[0..n) the carries */
    if (cy || G.cmp(r, m->d, n) >= 0) G.sub_n(r, r, m->d, n);
}

/* x (any non-negative mpz, any size) * R**shift mod m into n limbs (shift 0 or 1). */
static int to_residue(limb *out, const mpz_struct *x, int shift, const Mod *m) {
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

static PyObject *mont_row(PyObject *self, PyObject *args) {
    PyObject *m_obj, *step_obj;
    Py_ssize_t size;
    int standard = 0;
    Mod m;
    if (!PyArg_ParseTuple(args, "OOn|p", &m_obj, &step_obj, &size, &standard)
        || !get_mod(m_obj, &m))
        return NULL;
    if (Py_TYPE(step_obj) != G.mpz_type || size < 1) {
        PyErr_SetString(PyExc_ValueError, "mont_row: step must be an mpz and size >= 1");
        return NULL;
    }
    long n = m.n;
    PyObject *out = PyBytes_FromStringAndSize(NULL, size * n * sizeof(limb));
    limb *t = PyMem_Malloc(2 * n * sizeof(limb)), *step = PyMem_Malloc(n * sizeof(limb));
    mpz_struct one = {1, 1, (limb[]){1}};
    if (out == NULL || t == NULL || step == NULL) {
        if (out != NULL) PyErr_NoMemory();
        goto fail;
    }
    limb *e = (limb *)PyBytes_AS_STRING(out);
    /* standard form: 1, step, step**2 ... (a standard value times a Montgomery one) */
    if (!to_residue(e, &one, standard ? 0 : 1, &m)
        || !to_residue(step, &((MPZ_Object *)step_obj)->z, 1, &m))
        goto fail;
    for (Py_ssize_t d = 1; d < size; d++) mont_mul(e + d * n, e + (d - 1) * n, step, &m, t);
    PyMem_Free(t);
    PyMem_Free(step);
    return out;
fail:
    Py_XDECREF(out);
    PyMem_Free(t);
    PyMem_Free(step);
    return NULL;
}

static int int64_buffer(PyObject *obj, Py_buffer *b, int ndim, const char *what) {
    if (PyObject_GetBuffer(obj, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0) return 0;
    if (b->ndim != ndim || b->itemsize != 8 || (strcmp(b->format, "q") && strcmp(b->format, "l"))) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous %d-D int64 array", what, ndim);
        PyBuffer_Release(b);
        return 0;
    }
    return 1;
}

static PyObject *mont_chain(PyObject *self, PyObject *args) {
    PyObject *m_obj, *rows, *d_obj, *start = Py_None, *first_obj = Py_None;
    Mod m;
    if (!PyArg_ParseTuple(args, "OO!O|OO", &m_obj, &PyList_Type, &rows, &d_obj, &start,
                          &first_obj)
        || !get_mod(m_obj, &m))
        return NULL;
    Py_buffer db, fb = {0};
    if (!int64_buffer(d_obj, &db, 2, "digits")) return NULL;
    if (first_obj != Py_None) {
        if (start != Py_None) {
            PyErr_SetString(PyExc_ValueError, "mont_chain: give start or first, not both");
            PyBuffer_Release(&db);
            return NULL;
        }
        if (PyObject_GetBuffer(first_obj, &fb, PyBUF_C_CONTIGUOUS) < 0) {
            PyBuffer_Release(&db);
            return NULL;
        }
    }
    long n = m.n;
    Py_ssize_t count = db.shape[0], w = db.shape[1], nrows = PyList_GET_SIZE(rows);
    const int64_t *dig = (const int64_t *)db.buf;
    PyObject *out = NULL, *fast = NULL;
    Py_buffer *rb = PyMem_Calloc(nrows ? nrows : 1, sizeof(Py_buffer));
    Py_ssize_t *rsize = PyMem_Calloc(nrows ? nrows : 1, sizeof(Py_ssize_t));
    limb *acc = PyMem_Malloc((count ? count : 1) * n * sizeof(limb));
    limb *t = PyMem_Malloc(2 * n * sizeof(limb));
    Py_ssize_t got = 0;
    if (rb == NULL || rsize == NULL || acc == NULL || t == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (w > nrows) {
        PyErr_SetString(PyExc_ValueError, "mont_chain: more digit columns than table rows");
        goto done;
    }
    for (; got < w; got++) {
        if (PyObject_GetBuffer(PyList_GET_ITEM(rows, got), &rb[got], PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        if (rb[got].len % (n * (Py_ssize_t)sizeof(limb))) {
            PyErr_SetString(PyExc_ValueError, "mont_chain: a row does not match the modulus");
            got++;
            goto done;
        }
        rsize[got] = rb[got].len / (n * sizeof(limb));
    }
    if (fb.obj != NULL && (w < 1 || fb.len != rb[0].len)) {
        PyErr_SetString(PyExc_ValueError, "mont_chain: first does not match row 0");
        goto done;
    }
    for (Py_ssize_t i = 0; i < count * w; i++) {
        if (dig[i] < 0 || dig[i] >= rsize[i % w]) {
            PyErr_SetString(PyExc_IndexError, "mont_chain: digit out of range of its row");
            goto done;
        }
    }
    Py_ssize_t j0 = 0;  /* the first digit column still to multiply in */
    if (fb.obj != NULL) {  /* row 0 in standard form: its entry is the start */
        for (Py_ssize_t i = 0; i < count; i++)
            memcpy(acc + i * n, (const limb *)fb.buf + dig[i * w] * n, n * sizeof(limb));
        j0 = 1;
    } else if (start == Py_None) {
        mpz_struct one = {1, 1, (limb[]){1}};
        for (Py_ssize_t i = 0; i < count; i++)
            if (!to_residue(acc + i * n, &one, 0, &m)) goto done;
    } else {
        fast = PySequence_Fast(start, "mont_chain: start must be a sequence of mpz");
        if (fast == NULL) goto done;
        if (PySequence_Fast_GET_SIZE(fast) != count) {
            PyErr_SetString(PyExc_ValueError, "mont_chain: start and digits differ in length");
            goto done;
        }
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *s = PySequence_Fast_GET_ITEM(fast, i);
            if (Py_TYPE(s) != G.mpz_type) {
                PyErr_SetString(PyExc_TypeError, "mont_chain: start must hold gmpy2 mpz");
                goto done;
            }
            if (!to_residue(acc + i * n, &((MPZ_Object *)s)->z, 0, &m)) goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        const int64_t *di = dig + i * w;
        if (i + 1 < count) {  /* the next element's entries: fetch while this one computes */
            for (Py_ssize_t j = 0; j < w; j++) {
                const char *e = (const char *)rb[j].buf + di[w + j] * n * sizeof(limb);
                for (long off = 0; off < n * (long)sizeof(limb); off += 64)
                    __builtin_prefetch(e + off);
            }
        }
        for (Py_ssize_t j = j0; j < w; j++) {
            if (di[j] == 0) continue;  /* entry 0 is R mod m: multiplying by it is a no-op */
            mont_mul(acc + i * n, acc + i * n, (const limb *)rb[j].buf + di[j] * n, &m, t);
        }
    }
    Py_END_ALLOW_THREADS
    out = PyList_New(count);
    if (out == NULL) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        MPZ_Object *r = G.new_mpz(NULL);
        if (r == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        memcpy(G.limbs_write(&r->z, n), acc + i * n, n * sizeof(limb));
        G.limbs_finish(&r->z, n);
        PyList_SET_ITEM(out, i, (PyObject *)r);
    }
done:
    for (Py_ssize_t j = 0; j < got; j++) PyBuffer_Release(&rb[j]);
    PyBuffer_Release(&db);
    if (fb.obj != NULL) PyBuffer_Release(&fb);
    Py_XDECREF(fast);
    PyMem_Free(rb);
    PyMem_Free(rsize);
    PyMem_Free(acc);
    PyMem_Free(t);
    return out;
}

/* Garner: x = b + m2 * ((a - b) * inv mod m1), the x mod m1 m2 with x = a mod m1 and
 * x = b mod m2, for lists a, b of mpz (inv = m2^-1 mod m1). */
static PyObject *crt_join(PyObject *self, PyObject *args) {
    PyObject *a_in, *b_in, *m1_obj, *m2_obj, *inv_obj;
    if (!PyArg_ParseTuple(args, "OOOOO", &a_in, &b_in, &m1_obj, &m2_obj, &inv_obj)) return NULL;
    Mod m1;
    if (!get_mod(m1_obj, &m1)) return NULL;
    if (Py_TYPE(m2_obj) != G.mpz_type || Py_TYPE(inv_obj) != G.mpz_type) {
        PyErr_SetString(PyExc_TypeError, "crt_join: m2 and inv must be gmpy2 mpz");
        return NULL;
    }
    PyObject *a = PySequence_Fast(a_in, "crt_join: a must be a sequence of mpz");
    PyObject *b = a ? PySequence_Fast(b_in, "crt_join: b must be a sequence of mpz") : NULL;
    PyObject *out = NULL;
    if (b == NULL) goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(a);
    if (PySequence_Fast_GET_SIZE(b) != n) {
        PyErr_SetString(PyExc_ValueError, "crt_join: a and b differ in length");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (Py_TYPE(PySequence_Fast_GET_ITEM(a, i)) != G.mpz_type
            || Py_TYPE(PySequence_Fast_GET_ITEM(b, i)) != G.mpz_type) {
            PyErr_SetString(PyExc_TypeError, "crt_join: a and b must hold gmpy2 mpz");
            goto done;
        }
    }
    out = PyList_New(n);
    if (out == NULL) goto done;
    const mpz_struct *M1 = &((MPZ_Object *)m1_obj)->z, *M2 = &((MPZ_Object *)m2_obj)->z;
    const mpz_struct *inv = &((MPZ_Object *)inv_obj)->z;
    mpz_struct t, u;
    G.z_init(&t);
    G.z_init(&u);
    for (Py_ssize_t i = 0; i < n; i++) {
        MPZ_Object *r = G.new_mpz(NULL);
        if (r == NULL) {
            Py_CLEAR(out);
            break;
        }
        const mpz_struct *ai = &((MPZ_Object *)PySequence_Fast_GET_ITEM(a, i))->z;
        const mpz_struct *bi = &((MPZ_Object *)PySequence_Fast_GET_ITEM(b, i))->z;
        G.z_sub(&t, ai, bi);
        G.z_mul(&u, &t, inv);
        G.z_fdiv_r(&t, &u, M1);
        G.z_set(&r->z, bi);
        G.z_addmul(&r->z, &t, M2);
        PyList_SET_ITEM(out, i, (PyObject *)r);
    }
    G.z_clear(&t);
    G.z_clear(&u);
done:
    Py_XDECREF(a);
    Py_XDECREF(b);
    return out;
}

/* Borrowed mpz items of a list/tuple (NULL + TypeError if one is not an mpz). */
static PyObject *mpz_seq(PyObject *obj, const char *what) {
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

#define ZP(seq, i) (&((MPZ_Object *)PySequence_Fast_GET_ITEM((seq), (i)))->z)

/* New mpz objects (value 0) for the results, made while the GIL is held. */
static PyObject *new_results(Py_ssize_t n) {
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        MPZ_Object *r = G.new_mpz(NULL);
        if (r == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, i, (PyObject *)r);
    }
    return out;
}

#define RZ(list, i) (&((MPZ_Object *)PyList_GET_ITEM((list), (i)))->z)

/* a[i] * b[i] mod m (any positive m), the products computed with the GIL released. */
static PyObject *mulmod(PyObject *self, PyObject *args) {
    PyObject *a_in, *b_in, *m_obj;
    if (!PyArg_ParseTuple(args, "OOO", &a_in, &b_in, &m_obj)) return NULL;
    if (!G.ready || Py_TYPE(m_obj) != G.mpz_type || ((MPZ_Object *)m_obj)->z.size <= 0) {
        PyErr_SetString(PyExc_ValueError, "mulmod: the modulus must be a positive mpz");
        return NULL;
    }
    PyObject *a = mpz_seq(a_in, "mulmod a"), *b = a ? mpz_seq(b_in, "mulmod b") : NULL;
    PyObject *out = NULL;
    if (b == NULL) goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(a);
    if (PySequence_Fast_GET_SIZE(b) != n) {
        PyErr_SetString(PyExc_ValueError, "mulmod: a and b differ in length");
        goto done;
    }
    out = new_results(n);
    if (out == NULL) goto done;
    const mpz_struct *M = &((MPZ_Object *)m_obj)->z;
    Py_BEGIN_ALLOW_THREADS
    mpz_struct t;
    G.z_init(&t);
    for (Py_ssize_t i = 0; i < n; i++) {
        G.z_mul(&t, ZP(a, i), ZP(b, i));
        G.z_fdiv_r(RZ(out, i), &t, M);
    }
    G.z_clear(&t);
    Py_END_ALLOW_THREADS
done:
    Py_XDECREF(a);
    Py_XDECREF(b);
    return out;
}

/* r = x**e in the Montgomery domain (x, r Montgomery forms; one = R mod m; e >= 1). */
static void mont_pow(limb *r, const limb *x, uint64_t e, const Mod *m, limb *t) {
    int bit = 63;
    while (!((e >> bit) & 1)) bit--;
    memcpy(r, x, m->n * sizeof(limb));
    for (bit--; bit >= 0; bit--) {
        mont_mul(r, r, r, m, t);
        if ((e >> bit) & 1) mont_mul(r, r, x, m, t);
    }
}

/* From this many limbs on (3072-bit moduli, e.g. Paillier's n^2), one GMP multiply and
 * divide beats a Montgomery product plus the group's fix-up. */
#define MONT_MAX_LIMBS 48

/* Whether an mpz is not already a residue in [0, m) of n limbs. */
static int unreduced(const mpz_struct *z, const Mod *m) {
    return z->size < 0 || z->size > m->n || (z->size == m->n && G.cmp(z->d, m->d, m->n) >= 0);
}

/* Per-group products mod an odd m: acc[g] = prod a[i] for groups[i] == g (< 0 skipped,
 * empty groups 1). Each product is one Montgomery product of standard-form values, which
 * leaves a factor 1/R per product; a group of c members is fixed at the end by one
 * product with R^c, the Montgomery form of R^(c-1). The GIL is released for the loop. */
static PyObject *group_product(PyObject *self, PyObject *args) {
    PyObject *a_in, *g_in, *m_obj;
    Py_ssize_t k;
    Mod m;
    if (!PyArg_ParseTuple(args, "OOnO", &a_in, &g_in, &k, &m_obj) || !get_mod(m_obj, &m))
        return NULL;
    if (k < 0) {
        PyErr_SetString(PyExc_ValueError, "group_product: negative group count");
        return NULL;
    }
    Py_buffer gb;
    if (!int64_buffer(g_in, &gb, 1, "groups")) return NULL;
    PyObject *a = mpz_seq(a_in, "group_product a"), *out = NULL;
    long n = m.n;
    limb *acc = NULL, *t = NULL, *one = NULL, *r2 = NULL, *fix = NULL, *pad = NULL, *big = NULL;
    uint64_t *count = NULL;
    if (a == NULL) goto done;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(a), nbig = 0;
    const int64_t *grp = (const int64_t *)gb.buf;
    if (gb.shape[0] != len) {
        PyErr_SetString(PyExc_ValueError, "group_product: one group per element");
        goto done;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        if (grp[i] >= k) {
            PyErr_SetString(PyExc_IndexError, "group_product: group index out of range");
            goto done;
        }
        if (grp[i] >= 0 && unreduced(ZP(a, i), &m)) nbig++;
    }
    if (n >= MONT_MAX_LIMBS) {  /* wide moduli: GMP's own multiply and divide win */
        out = new_results(k);
        if (out == NULL) goto done;
        for (Py_ssize_t g = 0; g < k; g++) G.z_set_ui(RZ(out, g), 1);
        const mpz_struct *M = &((MPZ_Object *)m_obj)->z;
        Py_BEGIN_ALLOW_THREADS
        mpz_struct tz;
        G.z_init(&tz);
        for (Py_ssize_t i = 0; i < len; i++) {
            if (grp[i] < 0) continue;
            G.z_mul(&tz, RZ(out, grp[i]), ZP(a, i));
            G.z_fdiv_r(RZ(out, grp[i]), &tz, M);
        }
        G.z_clear(&tz);
        Py_END_ALLOW_THREADS
        goto done;
    }
    acc = PyMem_Calloc((k ? k : 1) * n, sizeof(limb));
    count = PyMem_Calloc(k ? k : 1, sizeof(uint64_t));
    t = PyMem_Malloc(2 * n * sizeof(limb));
    one = PyMem_Malloc(n * sizeof(limb));
    r2 = PyMem_Malloc(n * sizeof(limb));
    fix = PyMem_Malloc(n * sizeof(limb));
    pad = PyMem_Malloc(n * sizeof(limb));
    big = PyMem_Malloc((nbig ? nbig : 1) * n * sizeof(limb));
    if (!acc || !count || !t || !one || !r2 || !fix || !pad || !big) {
        PyErr_NoMemory();
        goto done;
    }
    mpz_struct unit = {1, 1, (limb[]){1}};
    if (!to_residue(one, &unit, 1, &m)) goto done;  /* R mod m */
    mpz_struct onez = {(int)n, (int)n, one};
    if (!to_residue(r2, &onez, 1, &m)) goto done;   /* R^2 mod m: the Montgomery form of R */
    for (Py_ssize_t i = 0, bi = 0; i < len; i++) {  /* the rare unreduced members, reduced */
        const mpz_struct *z = ZP(a, i);
        if (grp[i] < 0 || !unreduced(z, &m)) continue;
        if (z->size < 0) {
            PyErr_SetString(PyExc_ValueError, "group_product: negative value");
            goto done;
        }
        if (!to_residue(big + (bi++) * n, z, 0, &m)) goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0, bi = 0; i < len; i++) {
        int64_t g = grp[i];
        if (g < 0) continue;
        const mpz_struct *z = ZP(a, i);
        const limb *x = z->d;
        if (unreduced(z, &m)) {
            x = big + (bi++) * n;
        } else if (z->size < n) {
            memset(pad, 0, n * sizeof(limb));
            memcpy(pad, z->d, z->size * sizeof(limb));
            x = pad;
        }
        limb *dst = acc + g * n;
        if (count[g]++ == 0) memcpy(dst, x, n * sizeof(limb));
        else mont_mul(dst, dst, x, &m, t);
    }
    /* fix-ups: R^c for each distinct count c >= 2, walking the counts upwards, so each
     * group costs one product (distinct counts are at most sqrt(2 * len)) */
    uint64_t prev = 1;  /* fix holds the Montgomery form of R^(prev - 1) = R^prev */
    memcpy(fix, one, n * sizeof(limb));
    for (;;) {
        uint64_t next = UINT64_MAX;
        for (Py_ssize_t g = 0; g < k; g++)
            if (count[g] > prev && count[g] < next) next = count[g];
        if (next == UINT64_MAX) break;
        mont_pow(pad, r2, next - prev, &m, t);  /* R^(next - prev), Montgomery form */
        mont_mul(fix, fix, pad, &m, t);
        prev = next;
        for (Py_ssize_t g = 0; g < k; g++)
            if (count[g] == next) mont_mul(acc + g * n, acc + g * n, fix, &m, t);
    }
    Py_END_ALLOW_THREADS
    out = PyList_New(k);
    for (Py_ssize_t g = 0; out != NULL && g < k; g++) {
        MPZ_Object *r = G.new_mpz(NULL);
        if (r == NULL) {
            Py_CLEAR(out);
            break;
        }
        if (count[g] == 0) acc[g * n] = 1;  /* an empty group: 1 */
        memcpy(G.limbs_write(&r->z, n), acc + g * n, n * sizeof(limb));
        G.limbs_finish(&r->z, n);
        PyList_SET_ITEM(out, g, (PyObject *)r);
    }
done:
    PyBuffer_Release(&gb);
    Py_XDECREF(a);
    PyMem_Free(acc);
    PyMem_Free(count);
    PyMem_Free(t);
    PyMem_Free(one);
    PyMem_Free(r2);
    PyMem_Free(fix);
    PyMem_Free(pad);
    PyMem_Free(big);
    return out;
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
