/* GF(2^128) products and the silent VOLE's code: the loops numpy cannot do well.
 *
 * Elements are two little-endian uint64 words (low, high); bit i is the coefficient of
 * x^i; the modulus is x^128 + x^7 + x^2 + x + 1 (gf128.py).
 *
 * mul(a, b, out[, portable])        out[i] = a[i] * b[i]   (a, b, out: uint64[2n])
 * mul_const(a, c, out[, portable])  out[i] = a[i] * c      (c: uint64[2])
 *   portable=True skips PCLMULQDQ (for the tests)
 * clmul_available()       whether the PCLMULQDQ path runs on this CPU
 * expand(x, rnd, w, sub, cols, out)  out[i] ^= XOR_{k < w} x[k*sub + (rnd[i*w+k]*sub >> 32)]
 *                         (rnd: uint32[n*w], x: uint64[2m*cols], out: uint64[2n*cols],
 *                         cols = 1 or 2 elements per row; a regular expander; the
 *                         seventh k of x is gathered for all rows at once, from cache)
 * accumulate(x, bits, acc, cols)  the convolution of expand-convolute codes (below)
 *
 * PCLMULQDQ is used when the compiler knows it and the CPU has it (checked at run time);
 * otherwise a portable 4-bit-window carry-less product. Same results as the numpy
 * fallback in gf128.py / lpn.py (checked on load).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_CLMUL_PATH 1
#include <immintrin.h>
#include <wmmintrin.h>
#endif

/* -- portable carry-less products ----------------------------------------------------- */

/* 64 x 64 -> 128 carry-less product, 4-bit windows of b. */
static void clmul64(uint64_t a, uint64_t b, uint64_t *lo, uint64_t *hi) {
    uint64_t tl[16], th[16];
    tl[0] = 0;
    th[0] = 0;
    for (int k = 1; k < 16; k++) {
        if (k & 1) {
            tl[k] = tl[k - 1] ^ a;
            th[k] = th[k - 1];
        } else {
            tl[k] = tl[k >> 1] << 1;
            th[k] = (th[k >> 1] << 1) | (tl[k >> 1] >> 63);
        }
    }
    uint64_t rl = 0, rh = 0;
    for (int s = 60; s >= 0; s -= 4) {
        rh = (rh << 4) | (rl >> 60);
        rl <<= 4;
        unsigned w = (unsigned)(b >> s) & 15;
        rl ^= tl[w];
        rh ^= th[w];
    }
    *lo = rl;
    *hi = rh;
}

/* Reduce the 256-bit product p[0..3] (little-endian words) modulo the field polynomial. */
static void reduce(const uint64_t p[4], uint64_t *r0, uint64_t *r1) {
    uint64_t l0 = p[0], l1 = p[1], h0 = p[2], h1 = p[3];
    /* x^128 = x^7 + x^2 + x + 1 (0x87): fold h1 (x^192..) then h0 (x^128..). */
    uint64_t u0 = h1 ^ (h1 << 1) ^ (h1 << 2) ^ (h1 << 7);
    uint64_t u1 = (h1 >> 63) ^ (h1 >> 62) ^ (h1 >> 57);
    l1 ^= u0;
    h0 ^= u1;
    uint64_t v0 = h0 ^ (h0 << 1) ^ (h0 << 2) ^ (h0 << 7);
    uint64_t v1 = (h0 >> 63) ^ (h0 >> 62) ^ (h0 >> 57);
    *r0 = l0 ^ v0;
    *r1 = l1 ^ v1;
}

static void mul_portable(const uint64_t *a, const uint64_t *b, uint64_t *out) {
    uint64_t p[4], ml, mh, nl, nh;
    clmul64(a[0], b[0], &p[0], &p[1]);
    clmul64(a[1], b[1], &p[2], &p[3]);
    clmul64(a[0], b[1], &ml, &mh);
    clmul64(a[1], b[0], &nl, &nh);
    p[1] ^= ml ^ nl;
    p[2] ^= mh ^ nh;
    reduce(p, &out[0], &out[1]);
}

/* a times the constant whose 8-bit-window tables are tab[16][256][2]. */
static void table_for(const uint64_t *c, uint64_t (*tab)[256][2]) {
    uint64_t ck[2] = {c[0], c[1]};
    for (int k = 0; k < 16; k++) {
        uint64_t basis[8][2];
        for (int j = 0; j < 8; j++) {
            basis[j][0] = ck[0];
            basis[j][1] = ck[1];
            /* ck *= x */
            uint64_t carry = ck[1] >> 63;
            ck[1] = (ck[1] << 1) | (ck[0] >> 63);
            ck[0] = (ck[0] << 1) ^ (carry ? 0x87 : 0);
        }
        tab[k][0][0] = tab[k][0][1] = 0;
        for (int j = 0; j < 8; j++)
            for (int v = 0; v < (1 << j); v++) {
                tab[k][(1 << j) + v][0] = tab[k][v][0] ^ basis[j][0];
                tab[k][(1 << j) + v][1] = tab[k][v][1] ^ basis[j][1];
            }
    }
}

/* -- PCLMULQDQ ------------------------------------------------------------------------ */

#ifdef HAVE_CLMUL_PATH
__attribute__((target("pclmul,sse4.1"))) static inline __m128i
reduce_clmul(__m128i lo, __m128i hi) {
    const __m128i poly = _mm_set_epi64x(0, 0x87);
    __m128i t = _mm_clmulepi64_si128(hi, poly, 0x01); /* h1 * 0x87 */
    lo = _mm_xor_si128(lo, _mm_slli_si128(t, 8));
    hi = _mm_xor_si128(hi, _mm_srli_si128(t, 8)); /* adds u1 to h0 */
    t = _mm_clmulepi64_si128(hi, poly, 0x00);     /* h0 * 0x87 */
    return _mm_xor_si128(lo, t);
}

__attribute__((target("pclmul,sse4.1"))) static inline __m128i mul_clmul1(__m128i a,
                                                                           __m128i b) {
    __m128i lo = _mm_clmulepi64_si128(a, b, 0x00);
    __m128i hi = _mm_clmulepi64_si128(a, b, 0x11);
    __m128i mid = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x01),
                                _mm_clmulepi64_si128(a, b, 0x10));
    lo = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
    hi = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));
    return reduce_clmul(lo, hi);
}

__attribute__((target("pclmul,sse4.1"))) static void mul_clmul(const uint64_t *a,
                                                               const uint64_t *b, uint64_t *out,
                                                               Py_ssize_t n, int bconst) {
    __m128i bc = _mm_loadu_si128((const __m128i *)b);
    for (Py_ssize_t i = 0; i < n; i++) {
        __m128i av = _mm_loadu_si128((const __m128i *)(a + 2 * i));
        __m128i bv = bconst ? bc : _mm_loadu_si128((const __m128i *)(b + 2 * i));
        _mm_storeu_si128((__m128i *)(out + 2 * i), mul_clmul1(av, bv));
    }
}

static int have_clmul(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    }
    return cached;
}
#else
static int have_clmul(void) { return 0; }
#endif

static void mul_any(const uint64_t *a, const uint64_t *b, uint64_t *out, Py_ssize_t n,
                    int bconst, int portable) {
#ifdef HAVE_CLMUL_PATH
    if (!portable && have_clmul()) {
        mul_clmul(a, b, out, n, bconst);
        return;
    }
#endif
    if (bconst && n >= 64) {
        uint64_t(*t)[256][2] = PyMem_RawMalloc(16 * 256 * 2 * sizeof(uint64_t));
        if (t) {
            table_for(b, t);
            for (Py_ssize_t i = 0; i < n; i++) {
                uint64_t r0 = 0, r1 = 0, w0 = a[2 * i], w1 = a[2 * i + 1];
                for (int k = 0; k < 8; k++) {
                    const uint64_t *e = t[k][(w0 >> (8 * k)) & 255];
                    const uint64_t *f = t[k + 8][(w1 >> (8 * k)) & 255];
                    r0 ^= e[0] ^ f[0];
                    r1 ^= e[1] ^ f[1];
                }
                out[2 * i] = r0;
                out[2 * i + 1] = r1;
            }
            PyMem_RawFree(t);
            return;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) mul_portable(a + 2 * i, bconst ? b : b + 2 * i, out + 2 * i);
}

/* -- Python bindings ------------------------------------------------------------------ */

static PyObject *py_mul(PyObject *self, PyObject *args, int bconst) {
    Py_buffer ab, bb, ob;
    int portable = 0;
    if (!PyArg_ParseTuple(args, "y*y*w*|p", &ab, &bb, &ob, &portable)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = ab.len / 16;
    if (ab.len % 16 || ob.len != ab.len || (bconst ? bb.len != 16 : bb.len != ab.len)) {
        PyErr_SetString(PyExc_ValueError, "mul: buffer sizes do not match");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    mul_any(ab.buf, bb.buf, ob.buf, n, bconst, portable);
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&ab);
    PyBuffer_Release(&bb);
    PyBuffer_Release(&ob);
    return result;
}

static PyObject *vole_mul(PyObject *self, PyObject *args) { return py_mul(self, args, 0); }
static PyObject *vole_mul_const(PyObject *self, PyObject *args) { return py_mul(self, args, 1); }

static PyObject *vole_clmul_available(PyObject *self, PyObject *args) {
    return PyBool_FromLong(have_clmul());
}

static PyObject *vole_expand(PyObject *self, PyObject *args) {
    Py_buffer xb, rb, ob;
    int w, cols;
    Py_ssize_t sub;
    if (!PyArg_ParseTuple(args, "y*y*iniw*", &xb, &rb, &w, &sub, &cols, &ob)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t stride = 2 * (Py_ssize_t)cols;
    Py_ssize_t n = ob.len / (8 * stride), m = xb.len / (8 * stride);
    if (w < 1 || cols < 1 || cols > 2 || ob.len % (8 * stride) || xb.len % (8 * stride) ||
        rb.len != n * w * 4 || sub < 1 || sub * w > m) {
        PyErr_SetString(PyExc_ValueError, "expand: buffer sizes do not match");
        goto done;
    }
    const uint64_t *x = xb.buf;
    const uint32_t *rnd = rb.buf;
    uint64_t *out = ob.buf;
    const Py_ssize_t ahead = 8; /* rows prefetched ahead */
    Py_BEGIN_ALLOW_THREADS
    /* k outer: each pass gathers from one seventh of x (a few MB: nearer caches) */
    for (int k = 0; k < w; k++) {
        const uint64_t *xk = x + (size_t)k * sub * stride;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i + ahead < n) {
                uint64_t r = rnd[(size_t)(i + ahead) * w + k];
                __builtin_prefetch(xk + ((r * (uint64_t)sub) >> 32) * stride);
            }
            uint64_t r = rnd[(size_t)i * w + k];
            const uint64_t *e = xk + ((r * (uint64_t)sub) >> 32) * stride;
            uint64_t *o = out + (size_t)i * stride;
            for (int c = 0; c < stride; c++) o[c] ^= e[c];
        }
    }
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&xb);
    PyBuffer_Release(&rb);
    PyBuffer_Release(&ob);
    return result;
}

/* accumulate(x, bits, acc, cols): the convolution of expand-convolute codes, in place.
 * For i = 0 .. S-1 in order: x[i+1+k] ^= x[i] for each set bit k < acc of row i of
 * bits (acc/8 bytes per row, LSB first), then x[i+1+acc] ^= x[i]; indices mod S. */
static PyObject *vole_accumulate(PyObject *self, PyObject *args) {
    Py_buffer xb, bb;
    int acc, cols;
    if (!PyArg_ParseTuple(args, "w*y*ii", &xb, &bb, &acc, &cols)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t stride = 2 * (Py_ssize_t)cols, nb = acc / 8;
    Py_ssize_t size = xb.len / (8 * (stride ? stride : 1));
    if (cols < 1 || cols > 2 || acc < 8 || acc % 8 || acc > 64 || xb.len % (8 * stride) ||
        size < 1 || bb.len != size * nb) {
        PyErr_SetString(PyExc_ValueError, "accumulate: buffer sizes do not match");
        goto done;
    }
    uint64_t *x = xb.buf;
    const uint8_t *bits = bb.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < size; i++) {
        uint64_t xi[4];
        for (int c = 0; c < stride; c++) xi[c] = x[i * stride + c];
        const uint8_t *row = bits + i * nb;
        if (i + acc + 1 < size) { /* no wrap: branch-free masked XORs */
            uint64_t *xj = x + (i + 1) * stride;
            for (Py_ssize_t byte = 0; byte < nb; byte++) {
                unsigned v = row[byte];
                for (int p = 0; p < 8; p++, xj += stride) {
                    uint64_t mask = (uint64_t)0 - ((v >> p) & 1);
                    for (int c = 0; c < stride; c++) xj[c] ^= xi[c] & mask;
                }
            }
            for (int c = 0; c < stride; c++) xj[c] ^= xi[c];
            continue;
        }
        Py_ssize_t j = i + 1 == size ? 0 : i + 1;
        for (Py_ssize_t byte = 0; byte < nb; byte++) {
            unsigned v = row[byte];
            for (int p = 0; p < 8; p++) {
                if ((v >> p) & 1) {
                    uint64_t *xj = x + j * stride;
                    for (int c = 0; c < stride; c++) xj[c] ^= xi[c];
                }
                j = j + 1 == size ? 0 : j + 1;
            }
        }
        uint64_t *xj = x + j * stride;
        for (int c = 0; c < stride; c++) xj[c] ^= xi[c];
    }
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&xb);
    PyBuffer_Release(&bb);
    return result;
}

static PyMethodDef methods[] = {
    {"accumulate", vole_accumulate, METH_VARARGS, "Expand-convolute accumulator, in place."},
    {"mul", vole_mul, METH_VARARGS, "Element-wise GF(2^128) product."},
    {"mul_const", vole_mul_const, METH_VARARGS, "GF(2^128) vector times one element."},
    {"clmul_available", vole_clmul_available, METH_NOARGS, "Whether PCLMULQDQ is used."},
    {"expand", vole_expand, METH_VARARGS, "XOR of w gathered rows into each output row."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_vole", NULL, -1, methods};

PyMODINIT_FUNC PyInit__vole(void) { return PyModule_Create(&module); }
