/* The compiled-trees kernel in C: raw margin and exact TreeSHAP of a few rows, from the tables of
 * models.compiled_trees.CompiledTrees (see its docstring for what they hold).
 *
 * It performs the very operations of CompiledTrees' numpy path, in the same order, so both give the
 * same floats; tests hold them equal. Every table index is checked against its table's length. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define N_TABLES 19
#define ZERO_THRESHOLD 1e-35
#define RELEASE_GIL_WORK 100000 /* rows x trees */
#define MAX_DEPTH 30              /* a leaf's path decisions are the bits of an int32 */
enum { NUMERIC = 0, ZERO_MISSING = 1, CATEGORICAL = 2 };

/* The order of the tables handed to bind(), with the item size and format each must have. */
enum {
    NODE_FEATURE, NODE_THRESHOLD, NODE_KIND, NODE_NAN_LEFT, NODE_ZERO_LEFT, NODE_CAT_ROW, CAT_LEFT,
    LEAF_PATH, LEAF_DEPTH, LEAF_BASE, OUTCOME_ROW, LEAF_REACHED, LEAF_VALUE, GROUP_START, GROUP_SLOT, GROUP_FEATURE, CREDIT,
    TREE_ORDER, ORDER_VALUE
};
static const char *FORMATS[N_TABLES] = {"q", "d", "B", "B", "B", "q", "B", "i", "i", "i", "i", "i", "d", "q", "q", "q", "d", "q", "d"};

typedef struct {
    Py_buffer view[N_TABLES];
    Py_ssize_t n_features, n_trees, width, leaves, cat_columns, depth;
} Trees;

static Py_ssize_t length(const Trees *t, int table) { return t->view[table].len / t->view[table].itemsize; }

static void trees_free(PyObject *capsule) {
    Trees *t = PyCapsule_GetPointer(capsule, "leadscore.trees");
    if (t == NULL) return;
    for (int i = 0; i < N_TABLES; i++)
        if (t->view[i].obj != NULL) PyBuffer_Release(&t->view[i]);
    PyMem_Free(t);
}

/* bind(tables, n_features, width, leaves, cat_columns) -> capsule holding the tables' buffers. */
static PyObject *bind(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *tables;
    Py_ssize_t n_features, width, leaves, cat_columns;
    if (!PyArg_ParseTuple(args, "O!nnnn", &PyTuple_Type, &tables, &n_features, &width, &leaves, &cat_columns))
        return NULL;
    if (PyTuple_GET_SIZE(tables) != N_TABLES) return PyErr_Format(PyExc_ValueError, "expected %d tables", N_TABLES);
    if (width <= 0 || width % 8 || leaves <= 0 || n_features <= 0 || cat_columns < 0)
        return PyErr_Format(PyExc_ValueError, "bad table shape");
    Trees *t = PyMem_Calloc(1, sizeof(Trees));
    if (t == NULL) return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(t, "leadscore.trees", trees_free);
    if (capsule == NULL) { PyMem_Free(t); return NULL; }
    for (int i = 0; i < N_TABLES; i++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(tables, i), &t->view[i], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
            Py_DECREF(capsule);
            return NULL;
        }
        const char *format = t->view[i].format;
        if (format[0] == '<' || format[0] == '=') format++;
        /* 'q' and 'l' are both int64 on the platforms numpy builds for; accept either. */
        int same = strcmp(format, FORMATS[i]) == 0 || (FORMATS[i][0] == 'q' && strcmp(format, "l") == 0 && t->view[i].itemsize == 8);
        if (!same) {
            PyErr_Format(PyExc_TypeError, "table %d has format %s, expected %s", i, t->view[i].format, FORMATS[i]);
            Py_DECREF(capsule); /* frees t: the message is built first */
            return NULL;
        }
    }
    t->n_features = n_features;
    t->width = width;
    t->leaves = leaves;
    t->cat_columns = cat_columns;
    t->n_trees = length(t, NODE_FEATURE) / width;
    t->depth = t->n_trees * leaves > 0 ? length(t, LEAF_PATH) / (t->n_trees * leaves) : 0;
    if (t->depth > MAX_DEPTH) {
        Py_DECREF(capsule);
        return PyErr_Format(PyExc_ValueError, "paths deeper than %d splits are not supported", MAX_DEPTH);
    }
    int consistent = length(t, NODE_FEATURE) == t->n_trees * width
        && length(t, NODE_THRESHOLD) == t->n_trees * width && length(t, NODE_KIND) == t->n_trees * width
        && length(t, NODE_NAN_LEFT) == t->n_trees * width && length(t, NODE_ZERO_LEFT) == t->n_trees * width
        && length(t, NODE_CAT_ROW) == t->n_trees * width
        && length(t, LEAF_DEPTH) == t->n_trees * leaves && length(t, LEAF_PATH) % (t->n_trees * leaves > 0 ? t->n_trees * leaves : 1) == 0
        && length(t, LEAF_BASE) == t->n_trees * leaves && length(t, GROUP_START) == t->n_trees * leaves + 1
        && length(t, LEAF_REACHED) == t->n_trees * leaves && length(t, LEAF_VALUE) == t->n_trees * leaves
        && length(t, GROUP_SLOT) == length(t, GROUP_FEATURE)
        && length(t, TREE_ORDER) == length(t, ORDER_VALUE)
        && (cat_columns == 0 ? 1 : length(t, CAT_LEFT) % cat_columns == 0);
    if (!consistent) {
        Py_DECREF(capsule);
        return PyErr_Format(PyExc_ValueError, "the tables' lengths do not agree");
    }
    return capsule;
}

#define CHECK(index, table) \
    if ((index) < 0 || (index) >= length(t, table)) { bad = 1; goto done; }

/* explain(capsule, X, margin, contributions or None): fills margin (n,) and contributions (n, n_features). */
static PyObject *explain(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule, *x_obj, *margin_obj, *contrib_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &capsule, &x_obj, &margin_obj, &contrib_obj)) return NULL;
    Trees *t = PyCapsule_GetPointer(capsule, "leadscore.trees");
    if (t == NULL) return NULL;
    Py_buffer xv = {0}, mv = {0}, cv = {0};
    int bad = 0, explaining = contrib_obj != Py_None;
    if (PyObject_GetBuffer(x_obj, &xv, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(margin_obj, &mv, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) goto fail;
    if (explaining && PyObject_GetBuffer(contrib_obj, &cv, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) goto fail;
    Py_ssize_t n = mv.len / (Py_ssize_t)sizeof(double), F = t->n_features;
    if (xv.len != n * F * (Py_ssize_t)sizeof(double) || (explaining && cv.len != xv.len)) {
        PyErr_SetString(PyExc_ValueError, "X, margin and contributions do not agree in shape");
        goto fail;
    }
    const double *X = xv.buf;
    double *margin = mv.buf, *contrib = explaining ? cv.buf : NULL;
    const int64_t *node_feature = t->view[NODE_FEATURE].buf, *node_cat_row = t->view[NODE_CAT_ROW].buf;
    const double *node_threshold = t->view[NODE_THRESHOLD].buf;
    const uint8_t *node_kind = t->view[NODE_KIND].buf, *nan_left = t->view[NODE_NAN_LEFT].buf;
    const uint8_t *zero_left = t->view[NODE_ZERO_LEFT].buf, *cat_left = t->view[CAT_LEFT].buf;
    const int32_t *leaf_path = t->view[LEAF_PATH].buf, *leaf_depth = t->view[LEAF_DEPTH].buf;
    const int32_t *leaf_base = t->view[LEAF_BASE].buf;
    const int32_t *outcome_row = t->view[OUTCOME_ROW].buf, *leaf_reached = t->view[LEAF_REACHED].buf;
    const double *leaf_value = t->view[LEAF_VALUE].buf, *credit = t->view[CREDIT].buf;
    const int64_t *group_start = t->view[GROUP_START].buf, *group_slot = t->view[GROUP_SLOT].buf;
    const int64_t *group_feature = t->view[GROUP_FEATURE].buf, *tree_order = t->view[TREE_ORDER].buf;
    const double *order_value = t->view[ORDER_VALUE].buf;
    const Py_ssize_t W = t->width, L = t->leaves, D = t->depth, unknown = t->cat_columns - 2;
    const Py_ssize_t n_order = length(t, TREE_ORDER);
    double *tree_value = PyMem_Malloc((size_t)(t->n_trees + 1) * sizeof(double));
    uint8_t *go = PyMem_Malloc((size_t)W);
    if (tree_value == NULL || go == NULL) {
        PyMem_Free(tree_value);
        PyMem_Free(go);
        PyErr_NoMemory();
        goto fail;
    }
    /* Let other threads run only when the work is large: for a few rows, handing the GIL back and
       waiting to take it again costs more than the rows (and can stall an event loop for ms). */
    PyThreadState *released = n * t->n_trees >= RELEASE_GIL_WORK ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t r = 0; r < n && !bad; r++) {
        const double *x = X + r * F;
        double *c = explaining ? contrib + r * F : NULL;
        if (c != NULL) memset(c, 0, (size_t)F * sizeof(double));
        for (Py_ssize_t tree = 0; tree < t->n_trees; tree++) {
            for (Py_ssize_t i = 0; i < W; i++) { /* every split's decision: 1 = the row goes left */
                Py_ssize_t node = tree * W + i;
                int64_t f = node_feature[node];
                if (f < 0 || f >= F) { bad = 1; goto done; }
                double v = x[f];
                if (node_kind[node] == CATEGORICAL) {
                    /* as numpy: NaN -> unknown, clip to [-1, unknown], truncate toward zero, + 1 */
                    double code = isnan(v) ? (double)unknown : v;
                    code = code < -1.0 ? -1.0 : (code > (double)unknown ? (double)unknown : code);
                    Py_ssize_t column = (Py_ssize_t)code + 1, row = node_cat_row[node];
                    CHECK(row * t->cat_columns + column, CAT_LEFT);
                    go[i] = cat_left[row * t->cat_columns + column] != 0;
                } else {
                    go[i] = isnan(v) ? nan_left[node] != 0 : v <= node_threshold[node];
                    if (node_kind[node] == ZERO_MISSING && fabs(isnan(v) ? 0.0 : v) <= ZERO_THRESHOLD)
                        go[i] = zero_left[node] != 0;
                }
            }
            double value = 0.0;
            for (Py_ssize_t j = 0; j < L; j++) {
                Py_ssize_t leaf = tree * L + j;
                int32_t bits = 0; /* the decisions at the leaf's path splits, bit k for its k-th split */
                for (int32_t k = 0; k < leaf_depth[leaf] && k < D; k++) {
                    int32_t split = leaf_path[leaf * D + k];
                    if (split < 0 || split >= W) { bad = 1; goto done; }
                    bits |= (int32_t)go[split] << k;
                }
                value += bits == leaf_reached[leaf] ? leaf_value[leaf] : 0.0; /* as numpy adds reached_value */
                if (c == NULL) continue;
                Py_ssize_t d = (Py_ssize_t)leaf_base[leaf] + bits;
                CHECK(d, OUTCOME_ROW);
                for (int64_t g = group_start[leaf]; g < group_start[leaf + 1]; g++) {
                    CHECK(g, GROUP_SLOT);
                    Py_ssize_t at = (Py_ssize_t)outcome_row[d] + group_slot[g];
                    CHECK(at, CREDIT);
                    if (group_feature[g] < 0 || group_feature[g] >= F) { bad = 1; goto done; }
                    c[group_feature[g]] += credit[at];
                }
            }
            tree_value[tree] = value;
        }
        /* the trees summed one by one in the booster's order; -1 marks a single-leaf tree (its constant) */
        double sum = 0.0;
        for (Py_ssize_t p = 0; p < n_order; p++) {
            int64_t tree = tree_order[p];
            if (tree >= t->n_trees) { bad = 1; goto done; }
            sum += tree >= 0 ? tree_value[tree] : order_value[p];
        }
        margin[r] = sum;
    }
done:
    if (released != NULL) PyEval_RestoreThread(released);
    PyMem_Free(tree_value);
    PyMem_Free(go);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "a compiled-trees table index is out of range");
        goto fail;
    }
    PyBuffer_Release(&xv);
    PyBuffer_Release(&mv);
    if (explaining) PyBuffer_Release(&cv);
    Py_RETURN_NONE;
fail:
    if (xv.obj != NULL) PyBuffer_Release(&xv);
    if (mv.obj != NULL) PyBuffer_Release(&mv);
    if (cv.obj != NULL) PyBuffer_Release(&cv);
    return NULL;
}

static PyMethodDef METHODS[] = {
    {"bind", bind, METH_VARARGS, "bind(tables, n_features, width, leaves, cat_columns) -> a handle on the tables"},
    {"explain", explain, METH_VARARGS, "explain(handle, X, margin, contributions or None): fill margin and contributions"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_trees", "The compiled-trees kernel in C.", -1, METHODS};

PyMODINIT_FUNC PyInit__trees(void) { return PyModule_Create(&MODULE); }
