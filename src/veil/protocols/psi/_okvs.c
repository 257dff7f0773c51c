/* Banded OKVS over GF(2) with 128-bit values: the two loops numpy cannot do well.
 *
 * solve(starts, bands, values, m, nw, x) -> 0 (solved) or 1 (rows dependent)
 *   starts: int64[n], bands: uint64[n*nw] (bit 0 of word 0 is column starts[i]),
 *   values: uint64[n*2], x: uint64[m*2] (writable; random on entry, the solution on exit
 *   at every pivot column, the random entry kept at every free column).
 * decode(x, starts, bands, nw, out) -> None: out[i] = XOR of x[starts[i] + k] over the
 *   set bits k of band i (out: writable uint64[n*2]).
 *
 * The elimination is the ribbon insertion of Dietzfelbinger and Walzer (ESA 2019) that
 * Bienstock, Patel, Seo and Yeo (USENIX Security 2023) use for their banded OKVS: a row is
 * shifted to its first set bit c; if column c has no pivot row it becomes the pivot,
 * otherwise the pivot row is XORed in and the insertion goes on. Back substitution runs
 * from the last column down. Same results as okvs._solve_py (checked on load).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORDS 8

static int ctz64(uint64_t v) { return __builtin_ctzll(v); }

/* Shift the nw-word little-endian number b right by s bits (0 <= s < 64*nw). */
static void shift_right(uint64_t *b, int nw, int s) {
    int ws = s >> 6, bs = s & 63;
    for (int j = 0; j < nw; j++) {
        uint64_t lo = (j + ws < nw) ? b[j + ws] : 0;
        uint64_t hi = (j + ws + 1 < nw) ? b[j + ws + 1] : 0;
        b[j] = bs ? ((lo >> bs) | (hi << (64 - bs))) : lo;
    }
}

/* First set bit of b, or -1 when b is zero. */
static int first_bit(const uint64_t *b, int nw) {
    for (int j = 0; j < nw; j++)
        if (b[j]) return 64 * j + ctz64(b[j]);
    return -1;
}

static int solve_core(const int64_t *starts, const uint64_t *bands, const uint64_t *values,
                      Py_ssize_t n, Py_ssize_t m, int nw, uint64_t *x, uint64_t *slot_b) {
    /* A pivot row's value is kept in x at its column (x there is overwritten by back
     * substitution anyway; free columns keep their random entry): no m x 16-byte array. */
    uint64_t *slot_v = x;
    uint64_t b[MAX_WORDS];
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t c = starts[i];
        uint64_t v0 = values[2 * i], v1 = values[2 * i + 1];
        memcpy(b, bands + (size_t)i * nw, sizeof(uint64_t) * nw);
        for (;;) {
            int t = first_bit(b, nw);
            if (t < 0) {
                if (v0 | v1) return 1; /* inconsistent: the rows are dependent */
                break;                 /* a redundant row (equal keys): nothing to add */
            }
            if (t) shift_right(b, nw, t);
            c += t;
            if (c < 0 || c >= m) return 2;
            uint64_t *sb = slot_b + (size_t)c * nw;
            if (!(sb[0] & 1)) {
                memcpy(sb, b, sizeof(uint64_t) * nw);
                slot_v[2 * c] = v0;
                slot_v[2 * c + 1] = v1;
                break;
            }
            for (int j = 0; j < nw; j++) b[j] ^= sb[j];
            v0 ^= slot_v[2 * c];
            v1 ^= slot_v[2 * c + 1];
        }
    }
    for (Py_ssize_t c = m - 1; c >= 0; c--) {
        const uint64_t *sb = slot_b + (size_t)c * nw;
        if (!(sb[0] & 1)) continue;
        uint64_t a0 = slot_v[2 * c], a1 = slot_v[2 * c + 1];
        for (int j = 0; j < nw; j++) {
            uint64_t word = j ? sb[j] : (sb[j] & ~(uint64_t)1);
            while (word) {
                Py_ssize_t k = c + 64 * j + ctz64(word);
                word &= word - 1;
                if (k >= m) return 2;
                a0 ^= x[2 * k];
                a1 ^= x[2 * k + 1];
            }
        }
        x[2 * c] = a0;
        x[2 * c + 1] = a1;
    }
    return 0;
}

static PyObject *okvs_solve(PyObject *self, PyObject *args) {
    Py_buffer st, bd, vl, xb;
    Py_ssize_t m;
    int nw;
    if (!PyArg_ParseTuple(args, "y*y*y*niw*", &st, &bd, &vl, &m, &nw, &xb)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = st.len / 8;
    if (nw < 1 || nw > MAX_WORDS || m < 1 || st.len % 8 || bd.len != n * 8 * nw ||
        vl.len != n * 16 || xb.len != m * 16) {
        PyErr_SetString(PyExc_ValueError, "solve: buffer sizes do not match n, m and nw");
        goto done;
    }
    uint64_t *slot_b = calloc((size_t)m * nw, sizeof(uint64_t));
    if (!slot_b) {
        PyErr_NoMemory();
        goto done;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = solve_core(st.buf, bd.buf, vl.buf, n, m, nw, xb.buf, slot_b);
    Py_END_ALLOW_THREADS
    free(slot_b);
    if (rc == 2) {
        PyErr_SetString(PyExc_ValueError, "solve: a band reaches past the last column");
        goto done;
    }
    result = PyLong_FromLong(rc);
done:
    PyBuffer_Release(&st);
    PyBuffer_Release(&bd);
    PyBuffer_Release(&vl);
    PyBuffer_Release(&xb);
    return result;
}

static PyObject *okvs_decode(PyObject *self, PyObject *args) {
    Py_buffer xb, st, bd, ob;
    int nw;
    if (!PyArg_ParseTuple(args, "y*y*y*iw*", &xb, &st, &bd, &nw, &ob)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = st.len / 8, m = xb.len / 16;
    const int64_t *starts = st.buf;
    const uint64_t *bands = bd.buf, *x = xb.buf;
    uint64_t *out = ob.buf;
    int bad = 0;
    if (nw < 1 || nw > MAX_WORDS || st.len % 8 || xb.len % 16 || bd.len != n * 8 * nw ||
        ob.len != n * 16) {
        PyErr_SetString(PyExc_ValueError, "decode: buffer sizes do not match n and nw");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        int64_t s = starts[i];
        const uint64_t *b = bands + (size_t)i * nw;
        if (s < 0 || s + 64 * (int64_t)nw > m) {
            bad = 1;
            break;
        }
        const uint64_t *xs = x + 2 * s;
        uint64_t a0 = 0, a1 = 0;
        for (int j = 0; j < nw; j++) {
            uint64_t word = b[j];
            const uint64_t *xw = xs + 128 * j;
            while (word) {
                int k = ctz64(word);
                word &= word - 1;
                a0 ^= xw[2 * k];
                a1 ^= xw[2 * k + 1];
            }
        }
        out[2 * i] = a0;
        out[2 * i + 1] = a1;
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "decode: a band reaches past the last column");
        goto done;
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&xb);
    PyBuffer_Release(&st);
    PyBuffer_Release(&bd);
    PyBuffer_Release(&ob);
    return result;
}

static PyMethodDef methods[] = {
    {"solve", okvs_solve, METH_VARARGS, "Banded elimination over GF(2), 128-bit values."},
    {"decode", okvs_decode, METH_VARARGS, "XOR of the entries under each band."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_okvs", NULL, -1, methods};

PyMODINIT_FUNC PyInit__okvs(void) { return PyModule_Create(&module); }
