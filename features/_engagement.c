/* leadscore.features.engagement's aggregation in C: one pass over the activities, for a training history
 * of millions and a request's handful alike. It applies the rules of engagement.reference_engagement
 * (integer counts, exact integer ages, days as the float64 age divided by a day's nanoseconds); tests
 * hold the two equal. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* aggregate(lead_index, type_code, occurred_ns, scoring_ns, types, window_ns, day_ns, out): out is
 * (leads, 2 * types + 4) float64, C order; the index and time arrays are int64. */
static PyObject *aggregate(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *objects[5];
    Py_ssize_t k;
    long long window_ns, day_ns;
    if (!PyArg_ParseTuple(args, "OOOOnLLO", &objects[0], &objects[1], &objects[2], &objects[3], &k, &window_ns, &day_ns,
                          &objects[4]))
        return NULL;
    Py_buffer view[5];
    int got = 0;
    for (; got < 5; got++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (got == 4 ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objects[got], &view[got], flags) < 0) goto fail;
        const char *format = view[got].format;
        if (format[0] == '<' || format[0] == '=') format++;
        int ok = got == 4 ? strcmp(format, "d") == 0 : (strcmp(format, "q") == 0 || strcmp(format, "l") == 0);
        if (!ok || view[got].itemsize != 8) {
            PyErr_Format(PyExc_TypeError, "argument %d has format %s, expected %s", got, view[got].format,
                         got == 4 ? "float64" : "int64");
            PyBuffer_Release(&view[got]);
            goto fail;
        }
    }
    if (window_ns < 0 || day_ns <= 0) {
        PyErr_SetString(PyExc_ValueError, "the window must not be negative and a day must be positive");
        goto fail;
    }
    Py_ssize_t N = view[0].len / 8, n = view[3].len / 8, width = 2 * k + 4;
    if (k <= 0 || view[1].len != view[0].len || view[2].len != view[0].len || view[4].len != n * width * 8) {
        PyErr_SetString(PyExc_ValueError, "the activity arrays and the output do not agree in shape");
        goto fail;
    }
    const int64_t *lead = view[0].buf, *type = view[1].buf, *occurred = view[2].buf, *scoring = view[3].buf;
    double *out = view[4].buf;
    int64_t *counts = PyMem_Calloc((size_t)(n * 2 * k) + 1, sizeof(int64_t));
    uint64_t *last = PyMem_Malloc((size_t)n * sizeof(uint64_t) + 1); /* each lead's smallest age; UINT64_MAX: none */
    if (counts == NULL || last == NULL) {
        PyMem_Free(counts);
        PyMem_Free(last);
        PyErr_NoMemory();
        goto fail;
    }
    int bad = 0;
    /* the loops read and write only the buffers held above and the two arrays allocated here */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) last[i] = UINT64_MAX;
    for (Py_ssize_t a = 0; a < N; a++) {
        int64_t l = lead[a], t = type[a];
        if (l < 0 || t < 0) continue; /* no lead, or an unknown type */
        if (l >= n || t >= k) { bad = 1; break; }
        if (occurred[a] == INT64_MIN || scoring[l] == INT64_MIN) continue; /* NaT: no moment to compare */
        if (scoring[l] < occurred[a]) continue; /* after the lead's scoring moment */
        /* exact: the difference of two int64 with scoring >= occurred lies in [0, 2^64 - 2] (INT64_MIN is NaT) */
        const uint64_t age = (uint64_t)scoring[l] - (uint64_t)occurred[a];
        int64_t *row = counts + l * 2 * k;
        if (age < (uint64_t)window_ns) row[t]++;
        row[k + t]++;
        if (age < last[l]) last[l] = age;
    }
    if (!bad) {
        for (Py_ssize_t i = 0; i < n; i++) {
            const int64_t *row = counts + i * 2 * k;
            double *o = out + i * width;
            int64_t recent = 0, total = 0, distinct = 0;
            for (Py_ssize_t j = 0; j < 2 * k; j++) o[j] = (double)row[j];
            for (Py_ssize_t j = 0; j < k; j++) {
                recent += row[j];
                total += row[k + j];
                distinct += row[k + j] > 0;
            }
            o[2 * k] = (double)recent;
            o[2 * k + 1] = (double)total;
            o[2 * k + 2] = (double)distinct;
            o[2 * k + 3] = last[i] == UINT64_MAX ? NAN : (double)last[i] / (double)day_ns;
        }
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(counts);
    PyMem_Free(last);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "a lead index or activity type code is out of range");
        goto fail;
    }
    for (int i = 0; i < 5; i++) PyBuffer_Release(&view[i]);
    Py_RETURN_NONE;
fail:
    for (int i = 0; i < got; i++) PyBuffer_Release(&view[i]);
    return NULL;
}

static PyMethodDef METHODS[] = {
    {"aggregate", aggregate, METH_VARARGS, "aggregate(lead_index, type_code, occurred_ns, scoring_ns, types, window_ns, day_ns, out)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_engagement", "Engagement aggregation in C.", -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__engagement(void) { return PyModule_Create(&MODULE); }
