/* Fixed-base chains in Montgomery form and Garner's join (see _gmpkernel.c).
 *
 *   mont_row(m, step, size, standard=False) -> bytes
 *       [step**d * R mod m for d < size] (limbs(m) limbs each); without the R if standard
 *   mont_chain(m, rows, digits, start=None, first=None) -> list[mpz]
 *       for each row i of digits (count, w): start[i] (or 1) * prod_j step_j**digits[i, j]
 *       mod m, where rows[j] is a mont_row buffer; ``first``, row 0 in standard form,
 *       saves a product: its entry is the start. Entries are prefetched one element
 *       ahead; the GIL is released for the chains.
 *   crt_join(a, b, m1, m2, inv) -> list[mpz]
 *       Garner's join of residues mod m1 and m2 (inv = m2^-1 mod m1), for the key
 *       owner's CRT encryption (mpz_sub/mul/fdiv_r/addmul)
 */
#include "_gmp.h"

PyObject *mont_row(PyObject *self, PyObject *args) {
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
    Py_BEGIN_ALLOW_THREADS  /* the new bytes object is ours alone until returned */
    for (Py_ssize_t d = 1; d < size; d++) mont_mul(e + d * n, e + (d - 1) * n, step, &m, t);
    Py_END_ALLOW_THREADS
    PyMem_Free(t);
    PyMem_Free(step);
    return out;
fail:
    Py_XDECREF(out);
    PyMem_Free(t);
    PyMem_Free(step);
    return NULL;
}

PyObject *mont_chain(PyObject *self, PyObject *args) {
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
    out = results_from_limbs(acc, count, n);
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
 * x = b mod m2, for lists a, b of mpz (inv = m2^-1 mod m1); GIL released. */
PyObject *crt_join(PyObject *self, PyObject *args) {
    PyObject *a_in, *b_in, *m1_obj, *m2_obj, *inv_obj;
    if (!PyArg_ParseTuple(args, "OOOOO", &a_in, &b_in, &m1_obj, &m2_obj, &inv_obj)) return NULL;
    Mod m1;
    if (!get_mod(m1_obj, &m1)) return NULL;
    if (Py_TYPE(m2_obj) != G.mpz_type || Py_TYPE(inv_obj) != G.mpz_type) {
        PyErr_SetString(PyExc_TypeError, "crt_join: m2 and inv must be gmpy2 mpz");
        return NULL;
    }
    PyObject *a, *b, *out;
    if (!pair_batch(a_in, b_in, "crt_join", &a, &b, &out)) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(a);
    const mpz_struct *M1 = &((MPZ_Object *)m1_obj)->z, *M2 = &((MPZ_Object *)m2_obj)->z;
    const mpz_struct *inv = &((MPZ_Object *)inv_obj)->z;
    Py_BEGIN_ALLOW_THREADS
    mpz_struct t, u;
    G.z_init(&t);
    G.z_init(&u);
    for (Py_ssize_t i = 0; i < n; i++) {
        G.z_sub(&t, ZP(a, i), ZP(b, i));
        G.z_mul(&u, &t, inv);
        G.z_fdiv_r(&t, &u, M1);
        G.z_set(RZ(out, i), ZP(b, i));
        G.z_addmul(RZ(out, i), &t, M2);
    }
    G.z_clear(&t);
    G.z_clear(&u);
    Py_END_ALLOW_THREADS
    Py_DECREF(a);
    Py_DECREF(b);
    return out;
}
