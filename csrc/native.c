/* The module marketlab._native: compiled pieces of the hot path, each a drop-in for a
 * pure-Python twin kept beside its caller (marketlab/native.py picks one for the whole package;
 * MARKETLAB_PURE_PYTHON=1 forces Python), so the two can be swapped and compared record for
 * record. This file: the book side (a type that owns its levels) and the recording's entry
 * scanner (a pure function over bytes); binance.c, blocks.c, inflow.c and rings.c the rest.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#include "native.h"

/* --- order book sides ------------------------------------------------------------------
 * Side: one side of a book as levels (key, qty) in an array sorted by key, the best (smallest
 * key: an ask's price, or minus a bid's price) LAST, so the changes that come most often, near
 * the top of the book, move the fewest levels. The twin of book.py's BookSide, same methods.
 */

typedef struct {
    double key, qty;
} Level;

typedef struct {
    PyObject_HEAD
    Level *lv;
    Py_ssize_t n, cap;
    double bound; /* keys at or inside it are "known" (a cut snapshot vouches for them) */
} Side;

static PyTypeObject SideType;


/* The index of `key` if held (*found = 1), else where it would go; keys descend by index. */
static inline Py_ssize_t side_find(const Side *s, double key, int *found) {
    Py_ssize_t lo = 0, hi = s->n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        double k = s->lv[mid].key;
        if (k > key)
            lo = mid + 1;
        else if (k < key)
            hi = mid;
        else {
            *found = 1;
            return mid;
        }
    }
    *found = 0;
    return lo;
}

static int side_set(Side *s, double key, double qty) {
    int found;
    Py_ssize_t i = side_find(s, key, &found);
    if (found) {
        s->lv[i].qty = qty;
        return 0;
    }
    if (s->n == s->cap) {
        Py_ssize_t cap = s->cap ? s->cap * 2 : 64;
        Level *lv = PyMem_Realloc(s->lv, cap * sizeof(Level));
        if (lv == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->lv = lv;
        s->cap = cap;
    }
    memmove(s->lv + i + 1, s->lv + i, (s->n - i) * sizeof(Level));
    s->lv[i].key = key;
    s->lv[i].qty = qty;
    s->n++;
    return 0;
}

/* 1 if `key` was held (and is removed), else 0 */
static int side_del(Side *s, double key, double *qty) {
    int found;
    Py_ssize_t i = side_find(s, key, &found);
    if (!found)
        return 0;
    if (qty)
        *qty = s->lv[i].qty;
    memmove(s->lv + i, s->lv + i + 1, (s->n - i - 1) * sizeof(Level));
    s->n--;
    return 1;
}

static inline double as_double(PyObject *o) {
    return PyFloat_CheckExact(o) ? PyFloat_AS_DOUBLE(o) : PyFloat_AsDouble(o);
}

static PyObject *Side_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "Side() takes no arguments");
        return NULL;
    }
    Side *s = (Side *)type->tp_alloc(type, 0);
    if (s) {
        s->lv = NULL;
        s->n = s->cap = 0;
        s->bound = Py_HUGE_VAL;
    }
    return (PyObject *)s;
}

static void Side_dealloc(Side *s) {
    PyMem_Free(s->lv);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static Py_ssize_t Side_len(Side *s) { return s->n; }

static int Side_contains(Side *s, PyObject *key) {
    double k = as_double(key);
    if (k == -1.0 && PyErr_Occurred())
        return -1;
    int found;
    side_find(s, k, &found);
    return found;
}

static int Side_ass(Side *s, PyObject *key, PyObject *value) {
    double k = as_double(key);
    if (k == -1.0 && PyErr_Occurred())
        return -1;
    if (value == NULL) {
        if (!side_del(s, k, NULL)) {
            PyErr_SetObject(PyExc_KeyError, key);
            return -1;
        }
        return 0;
    }
    double q = as_double(value);
    if (q == -1.0 && PyErr_Occurred())
        return -1;
    return side_set(s, k, q);
}

static PyObject *Side_get(Side *s, PyObject *key) {
    double k = as_double(key);
    if (k == -1.0 && PyErr_Occurred())
        return NULL;
    int found;
    Py_ssize_t i = side_find(s, k, &found);
    if (!found) {
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    return PyFloat_FromDouble(s->lv[i].qty);
}

/* pop(key, default=None) -> the quantity held at key, removed; default when not held */
static PyObject *Side_pop(Side *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "pop(key, default=None)");
        return NULL;
    }
    double k = as_double(args[0]), q;
    if (k == -1.0 && PyErr_Occurred())
        return NULL;
    if (side_del(s, k, &q))
        return PyFloat_FromDouble(q);
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

static PyObject *Side_clear(Side *s, PyObject *unused) {
    s->n = 0;
    s->bound = Py_HUGE_VAL;
    Py_RETURN_NONE;
}

static PyObject *Side_set_bound(Side *s, PyObject *bound) {
    double b = as_double(bound);
    if (b == -1.0 && PyErr_Occurred())
        return NULL;
    s->bound = b;
    Py_RETURN_NONE;
}

static PyObject *level_tuple(const Level *l) {
    return Py_BuildValue("(dd)", l->key, l->qty);
}

/* peekitem(index=0) -> the best (key, qty); only index 0 is kept at hand, as in BookSide */
static PyObject *Side_peekitem(Side *s, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t index = 0;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "peekitem(index=0)");
        return NULL;
    }
    if (nargs == 1 && (index = PyLong_AsSsize_t(args[0])) == -1 && PyErr_Occurred())
        return NULL;
    if (index != 0) {
        PyErr_SetString(PyExc_IndexError, "only the best level is at hand");
        return NULL;
    }
    if (s->n == 0) {
        PyErr_SetString(PyExc_IndexError, "an empty side has no best level");
        return NULL;
    }
    return level_tuple(&s->lv[s->n - 1]);
}

/* best() -> the best key (IndexError when empty) */
static PyObject *Side_best(Side *s, PyObject *unused) {
    if (s->n == 0) {
        PyErr_SetString(PyExc_IndexError, "an empty side has no best level");
        return NULL;
    }
    return PyFloat_FromDouble(s->lv[s->n - 1].key);
}

/* a count argument, negative taken as 0; 0 with an exception set when not an int */
static int count_arg(PyObject *arg, Py_ssize_t *n) {
    *n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (*n == -1 && PyErr_Occurred())
        return 0;
    if (*n < 0)
        *n = 0;
    return 1;
}

/* first(n) -> the n best (key, qty), best first */
static PyObject *Side_first(Side *s, PyObject *arg) {
    Py_ssize_t n;
    if (!count_arg(arg, &n))
        return NULL;
    if (n > s->n)
        n = s->n;
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = level_tuple(&s->lv[s->n - 1 - i]);
        if (t == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, t);
    }
    return out;
}

/* trim(keep) -> the keys dropped: all but the `keep` best levels */
static PyObject *Side_trim(Side *s, PyObject *arg) {
    Py_ssize_t keep;
    if (!count_arg(arg, &keep))
        return NULL;
    Py_ssize_t drop = s->n > keep ? s->n - keep : 0;
    PyObject *out = PyList_New(drop);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < drop; i++) {
        PyObject *k = PyFloat_FromDouble(s->lv[i].key);
        if (k == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, k);
    }
    if (drop)
        memmove(s->lv, s->lv + drop, (s->n - drop) * sizeof(Level));
    s->n -= drop;
    return out;
}

/* A level of a delta or a snapshot as two doubles: a (price, qty) tuple or list (or any
 * sequence of two); 0 with an exception set when it is not one, or its price is no number.
 * Both items are held while they are converted: a `__float__` may change the row. */
static int level_pair(PyObject *row, Py_ssize_t i, double *price, double *qty) {
    /* a tuple's items are its own (the caller holds the tuple); any other row is copied */
    PyObject *held = PyTuple_CheckExact(row) ? Py_NewRef(row) : PySequence_Tuple(row);
    if (held == NULL || PyTuple_GET_SIZE(held) != 2) {
        Py_XDECREF(held);
        PyErr_Format(PyExc_TypeError, "level %zd is not a (price, qty) pair", i);
        return 0;
    }
    *price = as_double(PyTuple_GET_ITEM(held, 0));
    *qty = *price == -1.0 && PyErr_Occurred() ? -1.0 : as_double(PyTuple_GET_ITEM(held, 1));
    Py_DECREF(held);
    if ((*price == -1.0 || *qty == -1.0) && PyErr_Occurred())
        return 0;
    if (isnan(*price)) {
        PyErr_Format(PyExc_ValueError, "level %zd has no price (NaN)", i);
        return 0;
    }
    return 1;
}

/* The (levels, sign) arguments of apply and load: the levels as (price, qty) doubles, in
 * order, in `*pairs` (PyMem, the caller's to free; `*n` of them); 0 with an exception set.
 * Every level is converted before any is used, so a bad one changes nothing. */
static int levels_and_sign(PyObject *const *args, Py_ssize_t nargs, const char *usage,
                           double *sign, double **pairs, Py_ssize_t *n) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, usage);
        return 0;
    }
    *sign = as_double(args[1]);
    if (*sign == -1.0 && PyErr_Occurred())
        return 0;
    /* a tuple holds its rows however a row's conversion changes the caller's list */
    PyObject *rows = PySequence_Tuple(args[0]);
    if (rows == NULL)
        return 0;
    *n = PyTuple_GET_SIZE(rows);
    *pairs = PyMem_Malloc((size_t)(*n ? *n : 1) * 2 * sizeof(double));
    if (*pairs == NULL) {
        Py_DECREF(rows);
        PyErr_NoMemory();
        return 0;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        if (!level_pair(PyTuple_GET_ITEM(rows, i), i, *pairs + 2 * i, *pairs + 2 * i + 1)) {
            Py_DECREF(rows);
            PyMem_Free(*pairs);
            *pairs = NULL;
            return 0;
        }
    }
    Py_DECREF(rows);
    return 1;
}

/* `n` (price, qty) pairs set at key sign * price in order, qty 0 removing; -1 (no memory, an
 * exception set) */
static int side_apply_pairs(Side *s, const double *pairs, size_t n, double sign) {
    for (size_t i = 0; i < n; i++) {
        double price = pairs[2 * i], qty = pairs[2 * i + 1];
        if (qty == 0.0)
            side_del(s, sign * price, NULL);
        else if (side_set(s, sign * price, qty) < 0)
            return -1;
    }
    return 0;
}

/* apply(changes, sign): each (price, qty) sets the level at sign * price, qty 0 removes it */
static PyObject *Side_apply(Side *s, PyObject *const *args, Py_ssize_t nargs) {
    double sign, *pairs;
    Py_ssize_t n;
    if (!levels_and_sign(args, nargs, "apply(changes, sign)", &sign, &pairs, &n))
        return NULL;
    int rc = side_apply_pairs(s, pairs, (size_t)n, sign);
    PyMem_Free(pairs);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The number of levels at or inside the bound: the tail of the array (keys descend) */
static Py_ssize_t side_known(const Side *s) {
    Py_ssize_t lo = 0, hi = s->n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        if (s->lv[mid].key > s->bound)
            lo = mid + 1;
        else
            hi = mid;
    }
    return s->n - lo;
}

/* All but the `keep` best levels dropped */
static void side_keep(Side *s, Py_ssize_t keep) {
    Py_ssize_t drop = s->n > keep ? s->n - keep : 0;
    if (drop)
        memmove(s->lv, s->lv + drop, (s->n - drop) * sizeof(Level));
    s->n -= drop;
}

/* apply_delta(bids, asks, bid_changes, ask_changes, keep, min_known) -> int: a book's delta on
 * its two sides (bids keyed by minus the price), then what the book must check of itself:
 * a side past keep + keep / 10 levels is cut to its `keep` best; 1 when a side bounded by a
 * cut snapshot holds fewer than `min_known` known levels (the price left the range the
 * snapshot vouched for), else 2 when the book is crossed, else 0. Every level is converted
 * before any is set, so a bad one changes nothing. The twin of book.py's apply_delta_python. */
static PyObject *apply_delta(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyObject_TypeCheck(args[0], &SideType) ||
        !PyObject_TypeCheck(args[1], &SideType)) {
        PyErr_SetString(PyExc_TypeError, "apply_delta(bids: Side, asks: Side, bid_changes, "
                                         "ask_changes, keep, min_known)");
        return NULL;
    }
    Side *bids = (Side *)args[0], *asks = (Side *)args[1];
    Py_ssize_t keep, min_known; /* a negative `keep` keeps nothing (as trim's count does) */
    if (!count_arg(args[4], &keep))
        return NULL;
    min_known = PyNumber_AsSsize_t(args[5], PyExc_OverflowError);
    if (min_known == -1 && PyErr_Occurred())
        return NULL;
    static PyObject *minus_one, *plus_one; /* the signs, made once */
    if (minus_one == NULL && ((minus_one = PyFloat_FromDouble(-1.0)) == NULL ||
                              (plus_one = PyFloat_FromDouble(1.0)) == NULL))
        return NULL;
    PyObject *bid_args[2] = {args[2], minus_one}, *ask_args[2] = {args[3], plus_one};
    const char *usage = "apply_delta: changes are (price, qty) pairs";
    double sign, *bid_pairs, *ask_pairs;
    Py_ssize_t nb, na;
    if (!levels_and_sign(bid_args, 2, usage, &sign, &bid_pairs, &nb))
        return NULL;
    if (!levels_and_sign(ask_args, 2, usage, &sign, &ask_pairs, &na)) {
        PyMem_Free(bid_pairs);
        return NULL;
    }
    int rc = side_apply_pairs(bids, bid_pairs, (size_t)nb, -1.0);
    if (rc == 0)
        rc = side_apply_pairs(asks, ask_pairs, (size_t)na, 1.0);
    PyMem_Free(bid_pairs);
    PyMem_Free(ask_pairs);
    if (rc < 0)
        return NULL;
    Py_ssize_t slack = keep > PY_SSIZE_T_MAX / 2 ? PY_SSIZE_T_MAX : keep + keep / 10;
    if (bids->n > slack)
        side_keep(bids, keep);
    if (asks->n > slack)
        side_keep(asks, keep);
    if ((bids->bound != Py_HUGE_VAL && side_known(bids) < min_known) ||
        (asks->bound != Py_HUGE_VAL && side_known(asks) < min_known))
        return PyLong_FromLong(1);
    if (bids->n && asks->n && -bids->lv[bids->n - 1].key >= asks->lv[asks->n - 1].key)
        return PyLong_FromLong(2);
    return PyLong_FromLong(0);
}

typedef struct {
    double key, qty;
    Py_ssize_t order;
} Loaded;

static int loaded_cmp(const void *a, const void *b) {
    const Loaded *x = a, *y = b; /* keys descending, then equal keys in the order given */
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    return x->order < y->order ? -1 : (x->order > y->order);
}

/* load(levels, sign): the side becomes `levels` (price, qty) keyed by sign * price (qty 0
 * skipped; a price given twice keeps its first key, 0.0 or -0.0, and the later quantity, as
 * a dict does), sorted once instead of inserted one by one. */
static PyObject *Side_load(Side *s, PyObject *const *args, Py_ssize_t nargs) {
    double sign, *pairs;
    Py_ssize_t n, m = 0;
    if (!levels_and_sign(args, nargs, "load(levels, sign)", &sign, &pairs, &n))
        return NULL;
    Loaded *tmp = PyMem_Malloc((n ? n : 1) * sizeof(Loaded));
    if (tmp == NULL) {
        PyMem_Free(pairs);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pairs[2 * i + 1] != 0.0) {
            tmp[m].key = sign * pairs[2 * i];
            tmp[m].qty = pairs[2 * i + 1];
            tmp[m].order = i;
            m++;
        }
    }
    PyMem_Free(pairs);
    qsort(tmp, m, sizeof(Loaded), loaded_cmp);
    if (m > s->cap) {
        Level *lv = PyMem_Realloc(s->lv, m * sizeof(Level));
        if (lv == NULL) {
            PyMem_Free(tmp);
            return PyErr_NoMemory();
        }
        s->lv = lv;
        s->cap = m;
    }
    s->n = 0;
    s->bound = Py_HUGE_VAL;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (s->n && s->lv[s->n - 1].key == tmp[i].key) {
            s->lv[s->n - 1].qty = tmp[i].qty; /* a repeated price: the later quantity */
            continue;
        }
        s->lv[s->n].key = tmp[i].key;
        s->lv[s->n].qty = tmp[i].qty;
        s->n++;
    }
    PyMem_Free(tmp);
    Py_RETURN_NONE;
}

static PyObject *Side_get_known(Side *s, void *unused) {
    return PyLong_FromSsize_t(side_known(s));
}

static PyObject *Side_get_bound(Side *s, void *unused) { return PyFloat_FromDouble(s->bound); }

static int Side_set_bound_attr(Side *s, PyObject *v, void *unused) {
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "bound cannot be deleted");
        return -1;
    }
    double b = as_double(v);
    if (b == -1.0 && PyErr_Occurred())
        return -1;
    s->bound = b;
    return 0;
}

static PyObject *Side_items(Side *s, PyObject *unused) {
    PyObject *n = PyLong_FromSsize_t(s->n);
    if (n == NULL)
        return NULL;
    PyObject *out = Side_first(s, n);
    Py_DECREF(n);
    return out;
}

static PyMethodDef Side_methods[] = {
    {"pop", (PyCFunction)(void (*)(void))Side_pop, METH_FASTCALL, "pop(key, default=None)"},
    {"clear", (PyCFunction)Side_clear, METH_NOARGS, "forget every level (and the bound)"},
    {"set_bound", (PyCFunction)Side_set_bound, METH_O, "keys at or inside it are known"},
    {"peekitem", (PyCFunction)(void (*)(void))Side_peekitem, METH_FASTCALL, "the best (key, qty)"},
    {"best", (PyCFunction)Side_best, METH_NOARGS, "the best key"},
    {"first", (PyCFunction)Side_first, METH_O, "the n best (key, qty), best first"},
    {"items", (PyCFunction)Side_items, METH_NOARGS, "every (key, qty), best first"},
    {"trim", (PyCFunction)Side_trim, METH_O, "keep the n best levels; the keys dropped"},
    {"load", (PyCFunction)(void (*)(void))Side_load, METH_FASTCALL,
     "load(levels, sign): the side becomes these (price, qty) at sign * price"},
    {"apply", (PyCFunction)(void (*)(void))Side_apply, METH_FASTCALL,
     "apply(changes, sign): (price, qty) pairs at sign * price, qty 0 removes"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Side_getset[] = {
    {"known", (getter)Side_get_known, NULL, "levels at or inside the bound", NULL},
    {"bound", (getter)Side_get_bound, (setter)Side_set_bound_attr, "the known range's edge", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Side_seq = {.sq_length = (lenfunc)Side_len,
                                     .sq_contains = (objobjproc)Side_contains};
static PyMappingMethods Side_map = {.mp_length = (lenfunc)Side_len,
                                    .mp_subscript = (binaryfunc)Side_get,
                                    .mp_ass_subscript = (objobjargproc)Side_ass};

static PyTypeObject SideType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "marketlab._native.Side",
    .tp_basicsize = sizeof(Side),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One side of an order book: levels by key, best (smallest key) first.",
    .tp_new = Side_new,
    .tp_dealloc = (destructor)Side_dealloc,
    .tp_as_sequence = &Side_seq,
    .tp_as_mapping = &Side_map,
    .tp_methods = Side_methods,
    .tp_getset = Side_getset,
};

/* --- recordings ------------------------------------------------------------------------
 * scan_entries(make, buf, pos, kinds, tags) -> (entries, pos, bad)
 *
 * Cuts whole entries (<BqHI header: kind, time_ns, tag length, data length; tag; data) out of
 * `buf` from `pos`, up to the first one not wholly in it, each as `make((kind, time_ns, tag,
 * data))` (ENTRY_VALUES names them, in this order). `tags` caches decoded tags (bytes -> str).
 * `bad` is True when an entry's kind is not in `kinds` or its tag is not UTF-8 (scanning stops
 * before it): the caller names the damage.
 */

PyObject *make_entry(PyObject *make, unsigned kind, int64_t time_ns, PyObject *tag,
                     const char *data, Py_ssize_t n) {
    PyObject *values = PyTuple_New(4);
    PyObject *k = values ? PyLong_FromUnsignedLong(kind) : NULL;
    PyObject *t = k ? PyLong_FromLongLong(time_ns) : NULL;
    PyObject *body = t ? PyBytes_FromStringAndSize(data, n) : NULL;
    if (body == NULL) {
        Py_XDECREF(values);
        Py_XDECREF(k);
        Py_XDECREF(t);
        Py_DECREF(tag);
        return NULL;
    }
    PyTuple_SET_ITEM(values, 0, k);
    PyTuple_SET_ITEM(values, 1, t);
    PyTuple_SET_ITEM(values, 2, tag);
    PyTuple_SET_ITEM(values, 3, body);
    PyObject *entry = PyObject_CallOneArg(make, values);
    Py_DECREF(values);
    return entry;
}

static PyObject *scan_entries(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "scan_entries(make, buf, pos, kinds, tags)");
        return NULL;
    }
    PyObject *make = args[0], *buf = args[1], *kinds = args[3], *tags = args[4];
    if (!PyCallable_Check(make)) {
        PyErr_SetString(PyExc_TypeError, "make must be callable");
        return NULL;
    }
    if (!PyBytes_CheckExact(buf) || !PyDict_CheckExact(tags) || !PyAnySet_Check(kinds)) {
        PyErr_SetString(PyExc_TypeError, "buf must be bytes, kinds a set and tags a dict");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[2]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t size = PyBytes_GET_SIZE(buf);
    if (pos < 0 || pos > size) {
        PyErr_SetString(PyExc_ValueError, "pos outside buf");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    int bad = 0;
    char kind_ok[256] = {0}; /* kinds known to be in `kinds` */
    EntryHead head;
    while (entry_head(data, size, pos, &head)) {
        unsigned kind = head.kind;
        uint16_t tag_len = head.tag_len;
        uint32_t data_len = head.data_len;
        Py_ssize_t start = pos + ENTRY_HEAD;
        if (!kind_ok[kind]) {
            PyObject *k = PyLong_FromUnsignedLong(kind);
            if (k == NULL)
                goto fail;
            int ok = PySet_Contains(kinds, k);
            Py_DECREF(k);
            if (ok < 0)
                goto fail;
            if (!ok) {
                bad = 1;
                break;
            }
            kind_ok[kind] = 1;
        }
        if (!utf8_valid(data + start, tag_len)) {
            bad = 1; /* a tag no writer wrote: damage, named by the caller */
            break;
        }
        PyObject *raw_tag = PyBytes_FromStringAndSize((const char *)data + start, tag_len);
        if (raw_tag == NULL)
            goto fail;
        PyObject *tag = PyDict_GetItemWithError(tags, raw_tag);
        if (tag != NULL) {
            Py_INCREF(tag);
        } else if (PyErr_Occurred()) {
            Py_DECREF(raw_tag);
            goto fail;
        } else {
            tag = PyUnicode_DecodeUTF8((const char *)data + start, tag_len, "strict");
            if (tag == NULL ||
                (PyDict_GET_SIZE(tags) < 4096 && PyDict_SetItem(tags, raw_tag, tag) < 0)) {
                Py_XDECREF(tag);
                Py_DECREF(raw_tag);
                goto fail;
            }
        }
        Py_DECREF(raw_tag);
        PyObject *entry = make_entry(make, kind, head.time_ns, tag,
                                     (const char *)data + start + tag_len, data_len);
        if (entry == NULL)
            goto fail;
        int rc = PyList_Append(out, entry);
        Py_DECREF(entry);
        if (rc < 0)
            goto fail;
        pos = start + tag_len + data_len;
    }
    return Py_BuildValue("(NnO)", out, pos, bad ? Py_True : Py_False);
fail:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"read_block", (PyCFunction)(void (*)(void))read_block, METH_FASTCALL,
     "read_block(reader, rest, more, kinds, ws_kind) -> Block: entries cut, frames read ahead"},
    {"zstd_load", (PyCFunction)zstd_load, METH_NOARGS,
     "zstd_load() -> the soname of the system's libzstd, loaded (once), or None"},
    {"apply_delta", (PyCFunction)(void (*)(void))apply_delta, METH_FASTCALL,
     "apply_delta(bids, asks, bid_changes, ask_changes, keep, min_known) -> 0, 1 or 2"},
    {"take_combined", (PyCFunction)(void (*)(void))take_combined, METH_FASTCALL,
     "take_combined(lanes, frame) -> True when the frame's record went to its lane's taker"},
    {"scan_entries", (PyCFunction)(void (*)(void))scan_entries, METH_FASTCALL,
     "scan_entries(make, buf, pos, kinds, tags) -> (entries, pos, bad)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "marketlab._native",
    "Compiled pieces of marketlab's hot path (pure-Python twins in the modules that use them).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&SideType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Side", (PyObject *)&SideType) < 0 ||
        module_add(m, "ENTRY_VALUES", Py_BuildValue("(ssss)", ENTRY_VALUES_NAMES)) < 0 ||
        native_binance_init(m) < 0 || native_blocks_init(m) < 0 || native_inflow_init(m) < 0 ||
        native_coinbase_init(m) < 0 ||
        native_rings_init(m) < 0 || native_bybit_init(m) < 0 || native_okx_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
