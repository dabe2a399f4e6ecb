/* The compiled-trees kernel, over the tables of leadscore.models.compiled_trees.CompiledTrees (see its
 * docstring for what they hold):
 *
 * - explain(): raw margin and exact TreeSHAP of rows, one row at a time: every split decided, each
 *   leaf's path decisions read and mapped to its row of credits, the credits added leaf by leaf in tree
 *   order, each tree's reached leaf value taken and the trees summed in the booster's order.
 * - margin(): raw margin of rows, by walking each tree from its root to one leaf, a block of rows at a
 *   time, and summing the trees in the booster's order: LightGBM's own float.
 *
 * Tests hold both equal to LightGBM. bind() checks every index the tables hold against the table it
 * points into, once, so the loops that score rows need no check.
 *
 * explain() reads a leaf's path decisions in one of two ways, with the same result: a loop over the
 * leaf's path splits, or, for trees of at most 64 splits on a CPU with a fast PEXT instruction (BMI2;
 * Intel since Haswell, AMD since Zen 3), one PEXT of the tree's decisions through the leaf's mask of
 * path splits. A path's splits come in increasing positions (bind checks it), so PEXT yields the bits
 * in path order. On that path each tree's numeric splits are decided first, without branches, and the
 * categorical and zero-as-missing ones after. With or without PEXT, a tree's credits are added in a
 * second pass, after every leaf's row of credits was found and prefetched: the same additions in the
 * same order.
 *
 * linear_bind() and linear_terms() read the tables of leadscore.models.linear_terms.LinearTerms: each
 * column's term for rows, with the rules of its numpy column path (numpy.interp's formula and edge
 * rules on the numeric columns, whose signed log1p the caller computes with numpy's own ufuncs). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_PEXT 1
#endif

#define N_TABLES 20
#define ZERO_THRESHOLD 1e-35
#define RELEASE_GIL_WORK 100000 /* rows x trees */
#define MAX_DEPTH 30              /* a leaf's path decisions are the bits of an int32 */
enum { NUMERIC = 0, ZERO_MISSING = 1, CATEGORICAL = 2 };

/* The order of the tables handed to bind(), with the item size and format each must have. */
enum {
    NODE_FEATURE, NODE_THRESHOLD, NODE_KIND, NODE_NAN_LEFT, NODE_ZERO_LEFT, NODE_CAT_ROW, CAT_LEFT,
    LEAF_PATH, LEAF_DEPTH, LEAF_BASE, OUTCOME_ROW, LEAF_REACHED, LEAF_VALUE, GROUP_START, GROUP_SLOT, GROUP_FEATURE, CREDIT,
    TREE_ORDER, ORDER_VALUE, NODE_CHILD
};
static const char *FORMATS[N_TABLES] = {"q", "d", "B", "B", "B", "q", "B", "i", "i", "i", "i", "i", "d", "q", "q", "q", "d", "q", "d", "i"};

/* One split as margin() walks it, gathered from the tables and checked once, in bind(). */
typedef struct {
    int32_t feature, child[2]; /* child[1]: where the row goes left; a next split's position, or ~leaf */
    uint8_t kind, nan_left, zero_left, position; /* position: the split's place in its tree (see by_kind) */
    Py_ssize_t cat_at;         /* a categorical split's row in CAT_LEFT, times its columns */
    double threshold;
} Node;

typedef struct {
    Py_buffer view[N_TABLES];
    Py_ssize_t n_features, n_trees, width, leaves, cat_columns, depth;
    Node *nodes;
    uint64_t *leaf_mask; /* per leaf: its path splits as bits of its tree's decisions; NULL: the loop reads them */
    Node *by_kind;       /* with leaf_mask: each tree's splits, the numeric ones first */
    int32_t *n_numeric;  /* ... and how many of them are numeric, per tree */
} Trees;

static Py_ssize_t length(const Trees *t, int table) { return t->view[table].len / t->view[table].itemsize; }

static void trees_free(PyObject *capsule) {
    Trees *t = PyCapsule_GetPointer(capsule, "leadscore.trees");
    if (t == NULL) return;
    for (int i = 0; i < N_TABLES; i++)
        if (t->view[i].obj != NULL) PyBuffer_Release(&t->view[i]);
    PyMem_Free(t->nodes);
    PyMem_Free(t->leaf_mask);
    PyMem_Free(t->by_kind);
    PyMem_Free(t->n_numeric);
    PyMem_Free(t);
}

/* Gather margin()'s nodes, checking every index they hold, so the walk needs no check: features and
 * categorical rows in range, each child after its split (the walk ends) and each leaf in its tree.
 * -1: a table is inconsistent (or memory ran out). */
static int gather_nodes(Trees *t) {
    const Py_ssize_t n = t->n_trees * t->width, cat_rows = t->cat_columns ? length(t, CAT_LEFT) / t->cat_columns : 0;
    const int64_t *feature = t->view[NODE_FEATURE].buf, *cat_row = t->view[NODE_CAT_ROW].buf;
    const uint8_t *kind = t->view[NODE_KIND].buf;
    const int32_t *child = t->view[NODE_CHILD].buf;
    t->nodes = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(Node));
    if (t->nodes == NULL) return -1;
    for (Py_ssize_t at = 0; at < n; at++) {
        Node *node = &t->nodes[at];
        const Py_ssize_t position = at % t->width;
        if (feature[at] < 0 || feature[at] >= t->n_features || kind[at] > CATEGORICAL) return -1;
        if (kind[at] == CATEGORICAL && (cat_row[at] < 0 || cat_row[at] >= cat_rows || t->cat_columns < 2)) return -1;
        node->feature = (int32_t)feature[at];
        node->kind = kind[at];
        node->nan_left = ((const uint8_t *)t->view[NODE_NAN_LEFT].buf)[at] != 0;
        node->zero_left = ((const uint8_t *)t->view[NODE_ZERO_LEFT].buf)[at] != 0;
        node->cat_at = kind[at] == CATEGORICAL ? cat_row[at] * t->cat_columns : 0;
        node->threshold = ((const double *)t->view[NODE_THRESHOLD].buf)[at];
        for (int side = 0; side < 2; side++) {
            const int32_t next = child[2 * at + side];
            if (next >= 0 ? next <= position || next >= t->width : ~next >= t->leaves) return -1;
            node->child[side] = next;
        }
    }
    return 0;
}

/* Check what explain() reads through each leaf: its path splits within its tree, every outcome of its
 * path decisions within OUTCOME_ROW, every credit those outcomes point to within CREDIT, its groups'
 * features within the row; and that TREE_ORDER names trees that exist. -1: something is out of range. */
static int check_leaves(const Trees *t) {
    const int32_t *path = t->view[LEAF_PATH].buf, *depth = t->view[LEAF_DEPTH].buf, *base = t->view[LEAF_BASE].buf;
    const int32_t *outcome_row = t->view[OUTCOME_ROW].buf;
    const int64_t *start = t->view[GROUP_START].buf, *slot = t->view[GROUP_SLOT].buf, *feature = t->view[GROUP_FEATURE].buf;
    const int64_t *order = t->view[TREE_ORDER].buf;
    const Py_ssize_t n_leaves = t->n_trees * t->leaves, n_groups = length(t, GROUP_SLOT);
    if (start[0] < 0) return -1;
    for (Py_ssize_t leaf = 0; leaf < n_leaves; leaf++) {
        if (depth[leaf] < 0 || depth[leaf] > t->depth || base[leaf] < 0) return -1;
        for (int32_t k = 0; k < depth[leaf]; k++)
            if (path[leaf * t->depth + k] < 0 || path[leaf * t->depth + k] >= t->width) return -1;
        if (start[leaf + 1] < start[leaf] || start[leaf + 1] > n_groups) return -1;
        int64_t widest = -1; /* the largest slot of the leaf's groups */
        for (int64_t g = start[leaf]; g < start[leaf + 1]; g++) {
            if (slot[g] < 0 || feature[g] < 0 || feature[g] >= t->n_features) return -1;
            widest = slot[g] > widest ? slot[g] : widest;
        }
        const int64_t outcomes = (int64_t)1 << depth[leaf];
        if ((int64_t)base[leaf] + outcomes > length(t, OUTCOME_ROW)) return -1;
        for (int64_t o = base[leaf]; o < base[leaf] + outcomes && widest >= 0; o++)
            if (outcome_row[o] < 0 || outcome_row[o] + widest >= length(t, CREDIT)) return -1;
    }
    for (Py_ssize_t p = 0; p < length(t, TREE_ORDER); p++)
        if (order[p] >= t->n_trees) return -1;
    return 0;
}

#ifdef HAVE_PEXT
/* BMI2, and not an AMD CPU before Zen 3 (family 19h), where PEXT is microcoded. */
static int fast_pext(void) {
    unsigned int eax, ebx, ecx, edx;
    __builtin_cpu_init(); /* safe however the module was loaded */
    if (!__builtin_cpu_supports("bmi2")) return 0;
    if (!__builtin_cpu_is("amd")) return 1;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const unsigned int family = ((eax >> 8) & 0xf) == 0xf ? 0xf + ((eax >> 20) & 0xff) : (eax >> 8) & 0xf;
    return family >= 0x19;
}

__attribute__((target("bmi2"))) static inline int32_t path_bits_pext(uint64_t left, uint64_t mask) {
    return (int32_t)_pext_u64(left, mask);
}
#endif

/* Each leaf's path splits as a bit mask of its tree's decisions, when PEXT can read them (see the top):
 * at most 64 splits a tree, and a path's splits in increasing positions. 0: not used (or out of memory). */
static int build_leaf_masks(Trees *t, int allowed) {
#ifdef HAVE_PEXT
    if (!allowed || t->width > 64 || !fast_pext()) return 0;
    const Py_ssize_t n_leaves = t->n_trees * t->leaves;
    const int32_t *path = t->view[LEAF_PATH].buf, *depth = t->view[LEAF_DEPTH].buf;
    uint64_t *mask = PyMem_Calloc((size_t)(n_leaves > 0 ? n_leaves : 1), sizeof(uint64_t));
    if (mask == NULL) return 0;
    for (Py_ssize_t leaf = 0; leaf < n_leaves; leaf++) {
        const int32_t *split = path + leaf * t->depth;
        for (int32_t k = 0; k < depth[leaf]; k++) {
            if (k > 0 && split[k] <= split[k - 1]) {
                PyMem_Free(mask);
                return 0;
            }
            mask[leaf] |= (uint64_t)1 << split[k];
        }
    }
    Node *by_kind = PyMem_Calloc((size_t)(t->n_trees * t->width > 0 ? t->n_trees * t->width : 1), sizeof(Node));
    int32_t *n_numeric = PyMem_Calloc((size_t)(t->n_trees > 0 ? t->n_trees : 1), sizeof(int32_t));
    if (by_kind == NULL || n_numeric == NULL) {
        PyMem_Free(mask);
        PyMem_Free(by_kind);
        PyMem_Free(n_numeric);
        return 0;
    }
    for (Py_ssize_t tree = 0; tree < t->n_trees; tree++) {
        Node *out = by_kind + tree * t->width;
        for (int numeric = 1; numeric >= 0; numeric--)
            for (Py_ssize_t i = 0; i < t->width; i++) {
                const Node *node = t->nodes + tree * t->width + i;
                if ((node->kind == NUMERIC) != numeric) continue;
                *out = *node;
                out->position = (uint8_t)i;
                out++;
                n_numeric[tree] += numeric;
            }
    }
    t->leaf_mask = mask;
    t->by_kind = by_kind;
    t->n_numeric = n_numeric;
    return 1;
#else
    (void)t;
    (void)allowed;
    return 0;
#endif
}

/* Take each of the tuple's n buffers into view[], C-contiguous, with the format formats[] gives ('q' and 'l' are
 * both int64 on the platforms numpy builds for; either is accepted). -1 with an exception set otherwise; the
 * views taken so far are left for the caller's destructor to release. */
static int get_tables(PyObject *tables, Py_buffer *view, int n, const char **formats, const char *what) {
    for (int i = 0; i < n; i++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(tables, i), &view[i], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
        const char *format = view[i].format;
        if (format[0] == '<' || format[0] == '=') format++;
        int same = strcmp(format, formats[i]) == 0 || (formats[i][0] == 'q' && strcmp(format, "l") == 0 && view[i].itemsize == 8);
        if (!same) {
            PyErr_Format(PyExc_TypeError, "%s %d has format %s, expected %s", what, i, view[i].format, formats[i]);
            return -1;
        }
    }
    return 0;
}

/* bind(tables, n_features, width, leaves, cat_columns, pext=True) -> capsule holding the tables' buffers. */
static PyObject *bind(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *tables;
    Py_ssize_t n_features, width, leaves, cat_columns;
    int pext = 1;
    if (!PyArg_ParseTuple(args, "O!nnnn|p", &PyTuple_Type, &tables, &n_features, &width, &leaves, &cat_columns, &pext))
        return NULL;
    if (PyTuple_GET_SIZE(tables) != N_TABLES) return PyErr_Format(PyExc_ValueError, "expected %d tables", N_TABLES);
    if (width <= 0 || width % 8 || leaves <= 0 || n_features <= 0 || cat_columns < 0)
        return PyErr_Format(PyExc_ValueError, "bad table shape");
    Trees *t = PyMem_Calloc(1, sizeof(Trees));
    if (t == NULL) return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(t, "leadscore.trees", trees_free);
    if (capsule == NULL) { PyMem_Free(t); return NULL; }
    if (get_tables(tables, t->view, N_TABLES, FORMATS, "table") < 0) {
        Py_DECREF(capsule); /* frees t: the message is built first */
        return NULL;
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
        && length(t, NODE_CHILD) == 2 * t->n_trees * width
        && (cat_columns == 0 ? 1 : length(t, CAT_LEFT) % cat_columns == 0);
    if (!consistent) {
        Py_DECREF(capsule);
        return PyErr_Format(PyExc_ValueError, "the tables' lengths do not agree");
    }
    if (gather_nodes(t) < 0 || check_leaves(t) < 0) {
        Py_DECREF(capsule);
        return PyErr_Format(PyExc_ValueError, "the trees' tables hold an index out of range, or a child before its split");
    }
    build_leaf_masks(t, pext);
    return capsule;
}

/* Whether a row whose value at ``node``'s feature is ``v`` goes left: LightGBM's Decision. A NaN goes
 * where the split sends missing values (for a split without missing values, where 0.0 goes); under
 * zero_as_missing, a NaN or |v| <= 1e-35 goes where missing values go. */
static inline int node_goes_left(const Node *node, const uint8_t *cat_left, double unknown, double v) {
    if (node->kind == CATEGORICAL) { /* NaN -> unknown, clip to [-1, unknown], truncate toward zero, + 1: column 0 holds
                                        negative codes, the last column missing and unseen ones (LightGBM sends all right) */
        double code = isnan(v) ? unknown : v;
        code = code < -1.0 ? -1.0 : (code > unknown ? unknown : code);
        return cat_left[node->cat_at + (Py_ssize_t)code + 1];
    }
    if (node->kind == ZERO_MISSING && fabs(isnan(v) ? 0.0 : v) <= ZERO_THRESHOLD) return node->zero_left;
    return isnan(v) ? node->nan_left : v <= node->threshold;
}

/* explain(capsule, X, margin, contributions or None): fills margin (n,) and contributions (n, n_features). */
static PyObject *explain(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule, *x_obj, *margin_obj, *contrib_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &capsule, &x_obj, &margin_obj, &contrib_obj)) return NULL;
    Trees *t = PyCapsule_GetPointer(capsule, "leadscore.trees");
    if (t == NULL) return NULL;
    Py_buffer xv = {0}, mv = {0}, cv = {0};
    const int explaining = contrib_obj != Py_None;
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
    const int32_t *leaf_path = t->view[LEAF_PATH].buf, *leaf_depth = t->view[LEAF_DEPTH].buf;
    const int32_t *leaf_base = t->view[LEAF_BASE].buf;
    const int32_t *outcome_row = t->view[OUTCOME_ROW].buf, *leaf_reached = t->view[LEAF_REACHED].buf;
    const double *leaf_value = t->view[LEAF_VALUE].buf, *credit = t->view[CREDIT].buf;
    const int64_t *group_start = t->view[GROUP_START].buf, *group_slot = t->view[GROUP_SLOT].buf;
    const int64_t *group_feature = t->view[GROUP_FEATURE].buf, *tree_order = t->view[TREE_ORDER].buf;
    const double *order_value = t->view[ORDER_VALUE].buf;
    const uint8_t *cat_left = t->view[CAT_LEFT].buf;
    const double unknown = (double)(t->cat_columns - 2);
    const Py_ssize_t W = t->width, L = t->leaves, D = t->depth;
    const uint64_t *leaf_mask = t->leaf_mask;
    const Py_ssize_t n_order = length(t, TREE_ORDER);
    double *tree_value = PyMem_Malloc((size_t)(t->n_trees + 1) * sizeof(double));
    uint8_t *go = PyMem_Malloc((size_t)W);
    int32_t *leaf_row = PyMem_Malloc((size_t)L * sizeof(int32_t)); /* each leaf's row of credits in this tree */
    if (tree_value == NULL || go == NULL || leaf_row == NULL) {
        PyMem_Free(tree_value);
        PyMem_Free(go);
        PyMem_Free(leaf_row);
        PyErr_NoMemory();
        goto fail;
    }
    /* Let other threads run only when the work is large: for a few rows, handing the GIL back and
       waiting to take it again costs more than the rows and can stall an event loop. */
    PyThreadState *released = n * t->n_trees >= RELEASE_GIL_WORK ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t r = 0; r < n; r++) {
        const double *x = X + r * F;
        double *c = explaining ? contrib + r * F : NULL;
        if (c != NULL) memset(c, 0, (size_t)F * sizeof(double));
        for (Py_ssize_t tree = 0; tree < t->n_trees; tree++) {
            const Node *nodes = t->nodes + tree * W;
            uint64_t left = 0; /* every split's decision: bit i for split i (with leaf masks), else go[i] */
            if (leaf_mask != NULL) { /* numeric splits first: their kind is not a branch to predict */
                const Node *split = t->by_kind + tree * W;
                Py_ssize_t i = 0;
                for (; i < t->n_numeric[tree]; i++) { /* isnan(v) ? nan_left : v <= threshold, without a branch (NaN <= t is false) */
                    const double v = x[split[i].feature];
                    left |= (uint64_t)((v <= split[i].threshold) | ((isnan(v) != 0) & split[i].nan_left)) << split[i].position;
                }
                for (; i < W; i++)
                    left |= (uint64_t)node_goes_left(&split[i], cat_left, unknown, x[split[i].feature]) << split[i].position;
            } else
                for (Py_ssize_t i = 0; i < W; i++) go[i] = (uint8_t)node_goes_left(&nodes[i], cat_left, unknown, x[nodes[i].feature]);
            double value = 0.0;
            for (Py_ssize_t j = 0; j < L; j++) {
                const Py_ssize_t leaf = tree * L + j;
                int32_t bits = 0; /* the decisions at the leaf's path splits, bit k for its k-th split */
#ifdef HAVE_PEXT
                if (leaf_mask != NULL) bits = path_bits_pext(left, leaf_mask[leaf]);
                else
#endif
                for (int32_t k = 0; k < leaf_depth[leaf]; k++) bits |= (int32_t)go[leaf_path[leaf * D + k]] << k;
                value += bits == leaf_reached[leaf] ? leaf_value[leaf] : 0.0; /* the reached leaf's value, + 0.0 for the others */
                if (c == NULL) continue;
                leaf_row[j] = outcome_row[leaf_base[leaf] + bits];
                __builtin_prefetch(credit + leaf_row[j]); /* the credits are added in a second pass, once all are asked for */
            }
            tree_value[tree] = value;
            if (c == NULL) continue;
            for (Py_ssize_t j = 0; j < L; j++) { /* the leaves' credits, leaf by leaf: the same additions in the same order */
                const Py_ssize_t leaf = tree * L + j;
                for (int64_t g = group_start[leaf]; g < group_start[leaf + 1]; g++) c[group_feature[g]] += credit[leaf_row[j] + group_slot[g]];
            }
        }
        /* the trees summed one by one in the booster's order; -1 marks a single-leaf tree (its constant) */
        double sum = 0.0;
        for (Py_ssize_t p = 0; p < n_order; p++) sum += tree_order[p] >= 0 ? tree_value[tree_order[p]] : order_value[p];
        margin[r] = sum;
    }
    if (released != NULL) PyEval_RestoreThread(released);
    PyMem_Free(tree_value);
    PyMem_Free(go);
    PyMem_Free(leaf_row);
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

#define BLOCK 32 /* rows walked through a tree together, so that their walks overlap in the CPU */

/* margin(capsule, X, margin): fills margin (n,) by walking each tree from its root to a leaf. */
static PyObject *margin(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule, *x_obj, *margin_obj;
    if (!PyArg_ParseTuple(args, "OOO", &capsule, &x_obj, &margin_obj)) return NULL;
    Trees *t = PyCapsule_GetPointer(capsule, "leadscore.trees");
    if (t == NULL) return NULL;
    Py_buffer xv = {0}, mv = {0};
    if (PyObject_GetBuffer(x_obj, &xv, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(margin_obj, &mv, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    const Py_ssize_t n = mv.len / (Py_ssize_t)sizeof(double), F = t->n_features, W = t->width, L = t->leaves;
    if (xv.len != n * F * (Py_ssize_t)sizeof(double)) {
        PyBuffer_Release(&xv);
        PyBuffer_Release(&mv);
        return PyErr_Format(PyExc_ValueError, "X and margin do not agree in shape");
    }
    const int64_t *tree_order = t->view[TREE_ORDER].buf;
    const double *X = xv.buf, *leaf_value = t->view[LEAF_VALUE].buf, *order_value = t->view[ORDER_VALUE].buf;
    const uint8_t *cat_left = t->view[CAT_LEFT].buf;
    const double unknown = (double)(t->cat_columns - 2);
    const Py_ssize_t n_order = length(t, TREE_ORDER);
    double *out = mv.buf;
    PyThreadState *released = n * t->n_trees >= RELEASE_GIL_WORK ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t first = 0; first < n; first += BLOCK) {
        const Py_ssize_t rows = n - first < BLOCK ? n - first : BLOCK;
        const double *x = X + first * F;
        double sum[BLOCK] = {0.0}; /* each row's trees summed one by one in the booster's order, as LightGBM does */
        for (Py_ssize_t p = 0; p < n_order; p++) {
            const int64_t tree = tree_order[p];
            if (tree < 0) { /* a single-leaf tree: its constant */
                for (Py_ssize_t r = 0; r < rows; r++) sum[r] += order_value[p];
                continue;
            }
            const Node *nodes = t->nodes + tree * W;
            int32_t at[BLOCK] = {0};
            for (int walking = 1; walking;) {
                walking = 0;
                for (Py_ssize_t r = 0; r < rows; r++) {
                    if (at[r] < 0) continue;
                    const Node *node = nodes + at[r];
                    at[r] = node->child[node_goes_left(node, cat_left, unknown, x[r * F + node->feature])];
                    walking |= at[r] >= 0;
                }
            }
            for (Py_ssize_t r = 0; r < rows; r++) sum[r] += leaf_value[tree * L + ~at[r]];
        }
        memcpy(out + first, sum, (size_t)rows * sizeof(double));
    }
    if (released != NULL) PyEval_RestoreThread(released);
    PyBuffer_Release(&xv);
    PyBuffer_Release(&mv);
    Py_RETURN_NONE;
}

/* path_bits(capsule) -> "pext" or "loop". */
static PyObject *path_bits(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule;
    if (!PyArg_ParseTuple(args, "O", &capsule)) return NULL;
    Trees *t = PyCapsule_GetPointer(capsule, "leadscore.trees");
    if (t == NULL) return NULL;
    return PyUnicode_FromString(t->leaf_mask != NULL ? "pext" : "loop");
}

/* The tables of an additive model (LinearTerms), checked once in linear_bind(). */
enum { LIN_CAT_OFFSETS, LIN_CAT_VALUES, LIN_KNOT_OFFSETS, LIN_KNOTS, LIN_KNOT_VALUES, LIN_NUM_MISSING, LIN_BOOL_VALUES, LIN_TABLES };
static const char *LIN_FORMATS[LIN_TABLES] = {"q", "d", "q", "d", "d", "d", "d"};

typedef struct {
    Py_buffer view[LIN_TABLES];
    Py_ssize_t n_cat, n_num, n_bool;
} Linear;

static void linear_free(PyObject *capsule) {
    Linear *t = PyCapsule_GetPointer(capsule, "leadscore.linear");
    if (t == NULL) return;
    for (int i = 0; i < LIN_TABLES; i++)
        if (t->view[i].obj != NULL) PyBuffer_Release(&t->view[i]);
    PyMem_Free(t);
}

/* linear_bind(tables, n_categorical, n_numeric, n_boolean) -> capsule holding the tables' buffers. */
static PyObject *linear_bind(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *tables;
    Py_ssize_t n_cat, n_num, n_bool;
    if (!PyArg_ParseTuple(args, "O!nnn", &PyTuple_Type, &tables, &n_cat, &n_num, &n_bool)) return NULL;
    if (PyTuple_GET_SIZE(tables) != LIN_TABLES) return PyErr_Format(PyExc_ValueError, "expected %d tables", LIN_TABLES);
    if (n_cat < 0 || n_num < 0 || n_bool < 0) return PyErr_Format(PyExc_ValueError, "bad column counts");
    Linear *t = PyMem_Calloc(1, sizeof(Linear));
    if (t == NULL) return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(t, "leadscore.linear", linear_free);
    if (capsule == NULL) { PyMem_Free(t); return NULL; }
    if (get_tables(tables, t->view, LIN_TABLES, LIN_FORMATS, "linear table") < 0) {
        Py_DECREF(capsule);
        return NULL;
    }
    t->n_cat = n_cat; t->n_num = n_num; t->n_bool = n_bool;
#define LEN(i) (t->view[i].len / t->view[i].itemsize)
    const int64_t *co = t->view[LIN_CAT_OFFSETS].buf, *ko = t->view[LIN_KNOT_OFFSETS].buf;
    int ok = LEN(LIN_CAT_OFFSETS) == n_cat + 1 && LEN(LIN_KNOT_OFFSETS) == n_num + 1 && LEN(LIN_NUM_MISSING) == n_num
        && LEN(LIN_BOOL_VALUES) == 3 * n_bool && LEN(LIN_KNOTS) == LEN(LIN_KNOT_VALUES);
    /* each categorical column holds at least its missing value; each numeric column at least one knot */
    for (Py_ssize_t j = 0; ok && j < n_cat; j++) ok = co[j] >= 0 && co[j + 1] > co[j] && co[j + 1] <= LEN(LIN_CAT_VALUES);
    for (Py_ssize_t k = 0; ok && k < n_num; k++) ok = ko[k] >= 0 && ko[k + 1] > ko[k] && ko[k + 1] <= LEN(LIN_KNOTS);
#undef LEN
    if (!ok) {
        Py_DECREF(capsule);
        return PyErr_Format(PyExc_ValueError, "the linear tables' lengths or offsets do not agree");
    }
    return capsule;
}

/* numpy.interp(x, xp[:n], fp[:n]) for one value: its binary search, formula and edge rules. */
static inline double interp_one(double x, const double *xp, const double *fp, Py_ssize_t n) {
    if (n == 1) return fp[0];
    Py_ssize_t lo = 0, hi = n; /* bisect_right: the first index whose knot is > x */
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (x < xp[mid]) hi = mid; else lo = mid + 1;
    }
    Py_ssize_t j = lo - 1;
    if (j < 0) return fp[0];
    if (j >= n - 1 || xp[j] == x) return fp[j];
    const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    double result = slope * (x - xp[j]) + fp[j];
    if (isnan(result)) {
        result = slope * (x - xp[j + 1]) + fp[j + 1];
        if (isnan(result) && fp[j] == fp[j + 1]) result = fp[j];
    }
    return result;
}

/* linear_terms(capsule, X, Z, out): out[i, j] = row i's term for column j. X (n, n_features) the encoded rows;
 * Z (n, n_numeric) the signed log1p of the numeric columns (0 where missing). */
static PyObject *linear_terms(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *capsule, *x_obj, *z_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &capsule, &x_obj, &z_obj, &out_obj)) return NULL;
    Linear *t = PyCapsule_GetPointer(capsule, "leadscore.linear");
    if (t == NULL) return NULL;
    Py_buffer xv = {0}, zv = {0}, ov = {0};
    PyObject *result = NULL;
    if (PyObject_GetBuffer(x_obj, &xv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    if (PyObject_GetBuffer(z_obj, &zv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    if (PyObject_GetBuffer(out_obj, &ov, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) goto done;
    if (strcmp(xv.format, "d") || strcmp(zv.format, "d") || strcmp(ov.format, "d")) {
        PyErr_SetString(PyExc_TypeError, "X, Z and out must be float64");
        goto done;
    }
    const Py_ssize_t width = t->n_cat + t->n_num + t->n_bool;
    const Py_ssize_t n = width ? xv.len / (Py_ssize_t)sizeof(double) / width : 0;
    if (xv.len != n * width * (Py_ssize_t)sizeof(double) || ov.len != xv.len
        || zv.len != n * t->n_num * (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "X, Z and out do not have the linear terms' shapes");
        goto done;
    }
    const int64_t *co = t->view[LIN_CAT_OFFSETS].buf, *ko = t->view[LIN_KNOT_OFFSETS].buf;
    const double *cv = t->view[LIN_CAT_VALUES].buf, *knots = t->view[LIN_KNOTS].buf, *kv = t->view[LIN_KNOT_VALUES].buf;
    const double *nm = t->view[LIN_NUM_MISSING].buf, *bv = t->view[LIN_BOOL_VALUES].buf;
    const double *X = xv.buf, *Z = zv.buf;
    double *out = ov.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *x = X + i * width, *z = Z + i * t->n_num;
        double *o = out + i * width;
        for (Py_ssize_t j = 0; j < t->n_cat; j++) {
            const Py_ssize_t missing = co[j + 1] - co[j] - 1;
            const double code = x[j];
            o[j] = cv[co[j] + ((isnan(code) || code < 0 || code >= (double)missing) ? missing : (Py_ssize_t)code)];
        }
        for (Py_ssize_t k = 0; k < t->n_num; k++) {
            const Py_ssize_t j = t->n_cat + k;
            o[j] = isnan(x[j]) ? nm[k] : interp_one(z[k], knots + ko[k], kv + ko[k], ko[k + 1] - ko[k]);
        }
        for (Py_ssize_t k = 0; k < t->n_bool; k++) {
            const Py_ssize_t j = t->n_cat + t->n_num + k;
            o[j] = bv[3 * k + (isnan(x[j]) ? 2 : (x[j] == 1.0 ? 1 : 0))];
        }
    }
    result = Py_None;
    Py_INCREF(result);
done:
    if (xv.obj) PyBuffer_Release(&xv);
    if (zv.obj) PyBuffer_Release(&zv);
    if (ov.obj) PyBuffer_Release(&ov);
    return result;
}

static PyMethodDef METHODS[] = {
    {"bind", bind, METH_VARARGS, "bind(tables, n_features, width, leaves, cat_columns, pext=True) -> a handle on the tables"},
    {"path_bits", path_bits, METH_VARARGS, "path_bits(handle) -> how explain() reads a leaf's path decisions: 'pext' or 'loop'"},
    {"explain", explain, METH_VARARGS, "explain(handle, X, margin, contributions or None): fill margin and contributions"},
    {"margin", margin, METH_VARARGS, "margin(handle, X, margin): fill margin by walking each tree to its leaf"},
    {"linear_bind", linear_bind, METH_VARARGS, "linear_bind(tables, n_categorical, n_numeric, n_boolean) -> a handle on LinearTerms' tables"},
    {"linear_terms", linear_terms, METH_VARARGS, "linear_terms(handle, X, Z, out): fill out with each row's term per column"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_trees", "The compiled-trees and linear-terms kernels in C.", -1, METHODS};

PyMODINIT_FUNC PyInit__trees(void) { return PyModule_Create(&MODULE); }
