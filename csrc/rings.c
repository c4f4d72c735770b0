/* A symbol's recent trades, compiled: a type that owns its columns and is used through its
 * methods (the twin of rings.py's TradeRingPython, same methods, same results).
 *
 * TradeRing(capacity, block): the newest `capacity` trades as five columns (TRADE_COLUMNS:
 *   time int64, price float64, qty float64, side int8 (0 buy, 1 sell), trade_id int64).
 *   Trades are gathered `block` at a time before they go into the columns, so a store told of
 *   every block (`on_block`) has every trade, even when the ring holds fewer than a block.
 * add(time, price, qty, side, trade_id, received, source) -> bool: one trade ("buy"/"sell";
 *   any other side is refused), False for a repeat (a trade id at or below the newest:
 *   dropped, counted in `duplicates`); ids skipped are counted in `missed`. Every argument is
 *   checked before anything changes. The last trade handed in (a repeat too) is kept with its
 *   `received` (wall time) and `source` for newest().
 * flush(): the trades gathered so far into the columns now; `on_block(*columns)` (five
 *   bytearrays, TRADE_COLUMNS' order) is told of them first. A store that raises loses that
 *   block; the ring keeps it, and the error goes to the caller.
 * columns() -> five bytearrays: copies of every trade held (gathered ones too), oldest first.
 * load(*columns): the ring becomes these trades (five buffers of equal length, the newest
 *   `capacity` kept; nothing gathered is kept); the counters stay.
 * newest() -> (price, time, received, source) of the last trade handed in, or None.
 * Every method holds the GIL from start to end and calls no Python code but `on_block`: a
 * reader in another thread sees each change whole. Only one thread adds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#include "native.h"

#define NCOL 5
static const char *const COLUMN_NAMES[NCOL] = {"time", "price", "qty", "side", "trade_id"};
static const size_t WIDTH[NCOL] = {8, 8, 8, 1, 8}; /* each column's item size */

typedef struct {
    PyObject_HEAD
    Py_ssize_t capacity, block;
    char *col[NCOL];     /* capacity rows each, written round: row (count % capacity) next */
    char *gather[NCOL];  /* block rows each: trades not yet in the columns */
    long long count;     /* rows ever written into the columns */
    Py_ssize_t gathered; /* rows in `gather` */
    long long last_id, missed, duplicates;
    int has_newest;
    double newest_price, newest_received;
    long long newest_time;
    PyObject *newest_source;
    PyObject *on_block; /* None or callable(*columns) */
    int flushing;       /* on_block is running: the ring takes no trade meanwhile */
} TradeRing;

static PyTypeObject TradeRingType;

static PyObject *BUY_TEXT, *SELL_TEXT;

static inline void put(char *const *cols, Py_ssize_t row, int64_t time, double price,
                       double qty, int8_t side, int64_t id) {
    memcpy(cols[0] + 8 * row, &time, 8);
    memcpy(cols[1] + 8 * row, &price, 8);
    memcpy(cols[2] + 8 * row, &qty, 8);
    cols[3][row] = (char)side;
    memcpy(cols[4] + 8 * row, &id, 8);
}

/* `n` rows of `src` columns (from row `at`) written into the ring's columns, after its newest
 * (only the last `capacity` of them when there are more). */
static void write_rows(TradeRing *r, char *const *src, Py_ssize_t at, Py_ssize_t n) {
    Py_ssize_t cap = r->capacity;
    if (n > cap) {
        r->count += n - cap;
        at += n - cap;
        n = cap;
    }
    Py_ssize_t start = (Py_ssize_t)(r->count % cap);
    Py_ssize_t first = n < cap - start ? n : cap - start;
    for (int c = 0; c < NCOL; c++) {
        size_t w = WIDTH[c];
        memcpy(r->col[c] + w * start, src[c] + w * at, w * first);
        if (first < n)
            memcpy(r->col[c], src[c] + w * (at + first), w * (n - first));
    }
    r->count += n;
}

/* The gathered rows as five new bytearrays (a tuple) */
static PyObject *gathered_columns(TradeRing *r) {
    PyObject *t = PyTuple_New(NCOL);
    for (int c = 0; t != NULL && c < NCOL; c++) {
        PyObject *b = PyByteArray_FromStringAndSize(r->gather[c], WIDTH[c] * r->gathered);
        if (b == NULL)
            Py_CLEAR(t);
        else
            PyTuple_SET_ITEM(t, c, b);
    }
    return t;
}

/* The gathered rows into the columns, `on_block` told first; 0, or -1 with its error set (the
 * rows go in all the same). The ring takes no trade while `on_block` runs, and is whole again
 * before anything it let go of is dropped (a finalizer may run then, and add). */
static int ring_flush(TradeRing *r) {
    if (r->gathered == 0)
        return 0;
    PyObject *res = NULL, *cols = NULL, *call = NULL;
    int rc = 0;
    if (r->on_block != Py_None) {
        call = Py_NewRef(r->on_block); /* held: another thread may replace it meanwhile */
        cols = gathered_columns(r);
        if (cols != NULL) {
            r->flushing = 1;
            res = PyObject_Call(call, cols, NULL);
        }
        rc = res == NULL ? -1 : 0;
    }
    write_rows(r, r->gather, 0, r->gathered);
    r->gathered = 0;
    r->flushing = 0;
    Py_XDECREF(res);
    Py_XDECREF(cols);
    Py_XDECREF(call);
    return rc;
}

static int busy(const TradeRing *r) {
    if (r->flushing) {
        PyErr_SetString(PyExc_RuntimeError, "a trade ring's on_block may not change the ring");
        return 1;
    }
    return 0;
}

/* add(time, price, qty, side, trade_id, received, source) -> bool */
static PyObject *TradeRing_add(TradeRing *r, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "add(time, price, qty, side, trade_id, received, source)");
        return NULL;
    }
    if (busy(r))
        return NULL;
    long long time = PyLong_AsLongLong(args[0]);
    if (time == -1 && PyErr_Occurred())
        return NULL;
    double price = PyFloat_AsDouble(args[1]);
    if (price == -1.0 && PyErr_Occurred())
        return NULL;
    double qty = PyFloat_AsDouble(args[2]);
    if (qty == -1.0 && PyErr_Occurred())
        return NULL;
    int8_t side;
    if (args[3] == BUY_TEXT || (PyUnicode_Check(args[3]) &&
                                PyUnicode_CompareWithASCIIString(args[3], "buy") == 0))
        side = 0;
    else if (args[3] == SELL_TEXT || (PyUnicode_Check(args[3]) &&
                                      PyUnicode_CompareWithASCIIString(args[3], "sell") == 0))
        side = 1;
    else {
        PyErr_Format(PyExc_ValueError, "a trade's side is \"buy\" or \"sell\", not %R", args[3]);
        return NULL;
    }
    long long id = PyLong_AsLongLong(args[4]);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    double received = PyFloat_AsDouble(args[5]);
    if (received == -1.0 && PyErr_Occurred())
        return NULL;
    /* the newest trade handed in, a repeat too (prices show what came last); the source it
       replaces is let go of once the ring is whole again */
    PyObject *replaced = r->newest_source;
    r->newest_source = Py_NewRef(args[6]);
    r->has_newest = 1;
    r->newest_price = price;
    r->newest_time = time;
    r->newest_received = received;
    PyObject *added = Py_True;
    if (id <= r->last_id) {
        r->duplicates++;
        added = Py_False;
    } else {
        if (r->last_id >= 0 && id > r->last_id + 1)
            r->missed += id - r->last_id - 1;
        r->last_id = id;
        put(r->gather, r->gathered++, time, price, qty, side, id);
        if (r->gathered >= r->block && ring_flush(r) < 0)
            added = NULL;
    }
    Py_XDECREF(replaced);
    return Py_XNewRef(added);
}

static PyObject *TradeRing_flush(TradeRing *r, PyObject *unused) {
    if (busy(r) || ring_flush(r) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static Py_ssize_t held(const TradeRing *r) {
    long long n = r->count + r->gathered;
    return n < r->capacity ? (Py_ssize_t)n : r->capacity;
}

static Py_ssize_t TradeRing_len(TradeRing *r) { return held(r); }

/* columns() -> five bytearrays, oldest first */
static PyObject *TradeRing_columns(TradeRing *r, PyObject *unused) {
    Py_ssize_t cap = r->capacity, n = held(r);
    Py_ssize_t from_gather = r->gathered < n ? r->gathered : n; /* the newest rows */
    Py_ssize_t from_cols = n - from_gather;
    Py_ssize_t in_cols = r->count < cap ? (Py_ssize_t)r->count : cap;
    /* the columns' newest `from_cols` rows: they end where the next row goes */
    Py_ssize_t end = (Py_ssize_t)(r->count % cap);
    Py_ssize_t start = (end - from_cols + cap) % cap;
    if (r->count < cap)
        start = in_cols - from_cols;
    PyObject *t = PyTuple_New(NCOL);
    for (int c = 0; t != NULL && c < NCOL; c++) {
        size_t w = WIDTH[c];
        PyObject *b = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(w * n));
        if (b == NULL) {
            Py_CLEAR(t);
            break;
        }
        char *out = PyByteArray_AS_STRING(b);
        Py_ssize_t first = from_cols < cap - start ? from_cols : cap - start;
        memcpy(out, r->col[c] + w * start, w * first);
        memcpy(out + w * first, r->col[c], w * (from_cols - first));
        memcpy(out + w * from_cols, r->gather[c] + w * (r->gathered - from_gather),
               w * from_gather);
        PyTuple_SET_ITEM(t, c, b);
    }
    return t;
}

/* load(time, price, qty, side, trade_id) */
static PyObject *TradeRing_load(TradeRing *r, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != NCOL) {
        PyErr_SetString(PyExc_TypeError, "load(time, price, qty, side, trade_id)");
        return NULL;
    }
    if (busy(r))
        return NULL;
    Py_buffer view[NCOL];
    int got = 0;
    Py_ssize_t n = -1;
    PyObject *result = NULL;
    for (; got < NCOL; got++) {
        if (PyObject_GetBuffer(args[got], &view[got], PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        if (view[got].len % (Py_ssize_t)WIDTH[got] != 0 ||
            (n >= 0 && view[got].len / (Py_ssize_t)WIDTH[got] != n)) {
            got++;
            PyErr_SetString(PyExc_ValueError, "load: five columns of equal length (items of 8, "
                                              "8, 8, 1 and 8 bytes)");
            goto done;
        }
        n = view[got].len / (Py_ssize_t)WIDTH[got];
    }
    char *src[NCOL];
    for (int c = 0; c < NCOL; c++)
        src[c] = view[c].buf;
    r->count = 0;
    r->gathered = 0;
    write_rows(r, src, 0, n);
    result = Py_NewRef(Py_None);
done:
    for (int c = 0; c < got; c++)
        PyBuffer_Release(&view[c]);
    return result;
}

static PyObject *TradeRing_newest(TradeRing *r, PyObject *unused) {
    if (!r->has_newest)
        Py_RETURN_NONE;
    return Py_BuildValue("(dLdO)", r->newest_price, r->newest_time, r->newest_received,
                         r->newest_source);
}

static PyObject *TradeRing_nbytes(TradeRing *r, void *unused) {
    size_t row = 0;
    for (int c = 0; c < NCOL; c++)
        row += WIDTH[c];
    return PyLong_FromSize_t(row * (size_t)(r->capacity + r->block));
}

static PyObject *TradeRing_get_on_block(TradeRing *r, void *unused) {
    return Py_NewRef(r->on_block);
}

static int TradeRing_set_on_block(TradeRing *r, PyObject *value, void *unused) {
    if (value == NULL || (value != Py_None && !PyCallable_Check(value))) {
        PyErr_SetString(PyExc_TypeError, "on_block is None or a callable");
        return -1;
    }
    Py_SETREF(r->on_block, Py_NewRef(value));
    return 0;
}

static int TradeRing_traverse(TradeRing *r, visitproc visit, void *arg) {
    Py_VISIT(r->on_block);
    Py_VISIT(r->newest_source);
    return 0;
}

static int TradeRing_clear(TradeRing *r) {
    Py_CLEAR(r->newest_source);
    Py_SETREF(r->on_block, Py_NewRef(Py_None));
    return 0;
}

static void TradeRing_dealloc(TradeRing *r) {
    PyObject_GC_UnTrack(r);
    Py_CLEAR(r->newest_source);
    Py_CLEAR(r->on_block);
    for (int c = 0; c < NCOL; c++) {
        PyMem_Free(r->col[c]);
        PyMem_Free(r->gather[c]);
    }
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *TradeRing_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *names[] = {"capacity", "block", NULL};
    Py_ssize_t capacity, block = 512;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n|n:TradeRing", names, &capacity, &block))
        return NULL;
    if (capacity < 1 || block < 1) {
        PyErr_Format(PyExc_ValueError, "capacity and block must be at least 1, got %zd and %zd",
                     capacity, block);
        return NULL;
    }
    if (capacity > PY_SSIZE_T_MAX / 16 || block > PY_SSIZE_T_MAX / 16)
        return PyErr_NoMemory();
    TradeRing *r = (TradeRing *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    r->capacity = capacity;
    r->block = block;
    r->last_id = -1;
    r->on_block = Py_NewRef(Py_None);
    for (int c = 0; c < NCOL; c++) {
        r->col[c] = PyMem_Calloc((size_t)capacity, WIDTH[c]);
        r->gather[c] = PyMem_Malloc((size_t)block * WIDTH[c]);
        if (r->col[c] == NULL || r->gather[c] == NULL) {
            Py_DECREF(r);
            return PyErr_NoMemory();
        }
    }
    return (PyObject *)r;
}

static PyMethodDef TradeRing_methods[] = {
    {"add", (PyCFunction)(void (*)(void))TradeRing_add, METH_FASTCALL,
     "add(time, price, qty, side, trade_id, received, source) -> False for a repeat"},
    {"flush", (PyCFunction)TradeRing_flush, METH_NOARGS,
     "flush(): the trades gathered into the columns (on_block told first)"},
    {"columns", (PyCFunction)TradeRing_columns, METH_NOARGS,
     "columns() -> five bytearrays (TRADE_COLUMNS), oldest first"},
    {"load", (PyCFunction)(void (*)(void))TradeRing_load, METH_FASTCALL,
     "load(time, price, qty, side, trade_id): the ring becomes these trades"},
    {"newest", (PyCFunction)TradeRing_newest, METH_NOARGS,
     "newest() -> (price, time, received, source) of the last trade handed in, or None"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef TradeRing_members[] = {
    {"capacity", T_PYSSIZET, offsetof(TradeRing, capacity), READONLY, "trades held at most"},
    {"block", T_PYSSIZET, offsetof(TradeRing, block), READONLY, "trades gathered at most"},
    {"last_id", T_LONGLONG, offsetof(TradeRing, last_id), 0, "the newest trade id (-1: none)"},
    {"missed", T_LONGLONG, offsetof(TradeRing, missed), 0, "trade ids skipped"},
    {"duplicates", T_LONGLONG, offsetof(TradeRing, duplicates), READONLY, "repeats dropped"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef TradeRing_getset[] = {
    {"on_block", (getter)TradeRing_get_on_block, (setter)TradeRing_set_on_block,
     "told of every block of trades, as five bytearrays, before they go into the columns",
     NULL},
    {"nbytes", (getter)TradeRing_nbytes, NULL, "bytes the columns take", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods TradeRing_seq = {.sq_length = (lenfunc)TradeRing_len};

static PyTypeObject TradeRingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "marketlab._native.TradeRing",
    .tp_basicsize = sizeof(TradeRing),
    .tp_dealloc = (destructor)TradeRing_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)TradeRing_traverse,
    .tp_clear = (inquiry)TradeRing_clear,
    .tp_doc = "TradeRing(capacity, block=512): a symbol's newest trades as five columns.",
    .tp_new = TradeRing_new,
    .tp_methods = TradeRing_methods,
    .tp_members = TradeRing_members,
    .tp_getset = TradeRing_getset,
    .tp_as_sequence = &TradeRing_seq,
};

int native_rings_init(PyObject *module) {
    BUY_TEXT = PyUnicode_InternFromString("buy");
    SELL_TEXT = PyUnicode_InternFromString("sell");
    if (BUY_TEXT == NULL || SELL_TEXT == NULL || PyType_Ready(&TradeRingType) < 0 ||
        PyModule_AddObjectRef(module, "TradeRing", (PyObject *)&TradeRingType) < 0)
        return -1;
    PyObject *names = PyTuple_New(NCOL);
    for (int c = 0; names != NULL && c < NCOL; c++) {
        PyObject *s = PyUnicode_InternFromString(COLUMN_NAMES[c]);
        if (s == NULL)
            Py_CLEAR(names);
        else
            PyTuple_SET_ITEM(names, c, s);
    }
    return module_add(module, "TRADE_COLUMNS", names);
}
