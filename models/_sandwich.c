/* The Hessian's sandwich product of the linear models' Newton steps, in C: X.T @ diag(w) @ X for a CSR
 * design X, with a column of ones (the intercept) appended as the last row and column. Only pairs
 * inside a row are visited, each once (the product is symmetric), and the interpreter lock is let go for
 * the loop. Without it, models/newton.py computes the same product with scipy (sandwich_reference); tests
 * hold the two equal. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int check(Py_buffer *view, const char *want, Py_ssize_t size, int index) {
    const char *format = view->format;
    if (format[0] == '<' || format[0] == '=' || format[0] == '@') format++;
    int ok = (strcmp(want, "d") == 0) ? strcmp(format, "d") == 0 : (strcmp(format, "i") == 0);
    if (!ok || view->itemsize != size) {
        PyErr_Format(PyExc_TypeError, "argument %d has format %s, expected %s", index, view->format,
                     size == 8 ? "float64" : "int32");
        return -1;
    }
    return 0;
}

/* sandwich(indptr, indices, data, w, out): indptr and indices int32 (CSR, n rows, p columns), data and w
 * float64, out a square (p + 1, p + 1) float64 array, C order, overwritten. */
static PyObject *sandwich(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *objects[5];
    if (!PyArg_ParseTuple(args, "OOOOO", &objects[0], &objects[1], &objects[2], &objects[3], &objects[4])) return NULL;
    static const char *formats[5] = {"i", "i", "d", "d", "d"};
    Py_buffer view[5];
    int got = 0;
    for (; got < 5; got++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (got == 4 ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objects[got], &view[got], flags) < 0) goto fail;
        if (check(&view[got], formats[got], formats[got][0] == 'i' ? 4 : 8, got) < 0) {
            PyBuffer_Release(&view[got]);
            goto fail;
        }
    }
    Py_ssize_t n = view[0].len / 4 - 1, nnz = view[1].len / 4, side = 0;
    for (Py_ssize_t s = 1; s * s * 8 <= view[4].len; s++) side = s;
    const int32_t *indptr = view[0].buf, *indices = view[1].buf;
    const double *data = view[2].buf, *w = view[3].buf;
    double *out = view[4].buf;
    if (n < 0 || view[2].len / 8 != nnz || view[3].len / 8 != n || side < 1 || side * side * 8 != view[4].len ||
        view[4].ndim != 2 || view[4].shape[0] != side || view[4].shape[1] != side || indptr[0] != 0 || indptr[n] != nnz) {
        PyErr_SetString(PyExc_ValueError, "the design, the weights and the output do not agree in shape");
        goto fail;
    }
    const Py_ssize_t p = side - 1;
    int bad = 0;
    /* the loops read and write only the buffers held above */
    Py_BEGIN_ALLOW_THREADS
    memset(out, 0, (size_t)(side * side) * sizeof(double));
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        const int32_t start = indptr[i], end = indptr[i + 1];
        if (start > end || end > nnz) { bad = 1; break; }
        const double wi = w[i];
        out[p * side + p] += wi;
        for (int32_t a = start; a < end && !bad; a++) {
            const int32_t ja = indices[a];
            if (ja < 0 || ja >= p) { bad = 1; break; }
            const double va = wi * data[a];
            out[(Py_ssize_t)ja * side + p] += va;
            for (int32_t b = a; b < end; b++) {
                const int32_t jb = indices[b];
                if (jb < 0 || jb >= p) { bad = 1; break; }
                const Py_ssize_t lo = ja < jb ? ja : jb, hi = ja < jb ? jb : ja;
                /* a column repeated in a row (a CSR without summed duplicates): the pair counts both ways */
                out[lo * side + hi] += (b != a && ja == jb) ? 2.0 * va * data[b] : va * data[b];
            }
        }
    }
    if (!bad) {
        for (Py_ssize_t r = 0; r < side; r++)
            for (Py_ssize_t c = r + 1; c < side; c++) out[c * side + r] = out[r * side + c];
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "the design's row pointers or column indices are out of range");
        goto fail;
    }
    for (int i = 0; i < 5; i++) PyBuffer_Release(&view[i]);
    Py_RETURN_NONE;
fail:
    for (int i = 0; i < got; i++) PyBuffer_Release(&view[i]);
    return NULL;
}

static PyMethodDef METHODS[] = {
    {"sandwich", sandwich, METH_VARARGS, "sandwich(indptr, indices, data, w, out)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_sandwich", "The Newton steps' sandwich product in C.", -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sandwich(void) { return PyModule_Create(&MODULE); }
