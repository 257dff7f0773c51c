/* Batches of modular products, the GIL released (see _gmpkernel.c).
 *
 *   mulmod(a, b, m) -> [a[i] * b[i] mod m]                    (ct + ct)
 *   group_product(a, groups, k, m) -> k products mod odd m    (histograms, buckets)
 */
#include "_gmp.h"

/* a[i] * b[i] mod m (any positive m), the products computed with the GIL released. */
PyObject *mulmod(PyObject *self, PyObject *args) {
    PyObject *a_in, *b_in, *m_obj;
    if (!PyArg_ParseTuple(args, "OOO", &a_in, &b_in, &m_obj)) return NULL;
    if (!G.ready || Py_TYPE(m_obj) != G.mpz_type || ((MPZ_Object *)m_obj)->z.size <= 0) {
        PyErr_SetString(PyExc_ValueError, "mulmod: the modulus must be a positive mpz");
        return NULL;
    }
    PyObject *a, *b, *out;
    if (!pair_batch(a_in, b_in, "mulmod", &a, &b, &out)) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(a);
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
    Py_DECREF(a);
    Py_DECREF(b);
    return out;
}

/* r = x**e in the Montgomery domain (x, r Montgomery forms; e >= 1). */
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
PyObject *group_product(PyObject *self, PyObject *args) {
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
    for (Py_ssize_t g = 0; g < k; g++)
        if (count[g] == 0) acc[g * n] = 1;  /* an empty group: 1 */
    out = results_from_limbs(acc, k, n);
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
