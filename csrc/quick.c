/* The common case of the busiest streams taken whole in compiled code: a trade that follows the
 * one before it, a book update that follows the book's last one, with no subscriber, no store
 * of every update and no bus watching. Such a record is never made as a Python object: its
 * fields go from the frame's slots straight into the status row, the trade ring's pending rows,
 * the book's sides. Anything else (a repeat, a gap, a book not synced, a subscriber, a lock
 * held by a reader) is left (0) to the lane's Python taker, which stays the reference: what
 * these do is exactly what it does (stream/quick.py says which Python code each stands for and
 * makes one only where that code is in place).
 *
 * QuickTrade(stats, state, buffer, symbol): Intake._take_trade + MarketState.on_trade +
 *   TradeBuffer.add.
 * QuickDelta(stats, feed, locked_book, state, symbol, synced, fetch): Intake._take_delta +
 *   BookSync._delta + OrderBook.on_delta + MarketState.on_delta.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "native.h"

/* slots of a trade and of a diff-depth update (csrc/binance.c's TRADE_FIELDS, DEPTH_FIELDS) */
enum { TR_E, TR_S, TR_T, TR_P, TR_Q, TR_TIME, TR_M };
enum { DP_E, DP_S, DP_FIRST, DP_LAST, DP_BIDS, DP_ASKS };

static PyObject *S_MARK, *S_MESSAGES, *S_LAST_RECEIVED, *S_SOURCE, *S_CALLBACKS, *S_LAST_ID,
    *S_RING, *S_PENDING, *S_FLUSH, *S_LAST_TRADE, *S_BOOK_TAP, *S_SHADOWS, *S_DELTA_STORE,
    *S_BOOK, *S_STATE, *S_LAST_UPDATE_ID, *S_EVENT_TIME, *S_STATS, *S_APPLIED, *S_BIDS,
    *S_ASKS, *S_BID_FLOOR, *S_ASK_CEILING, *S_MAX_LEVELS, *S_SETTLED, *S_SCHEDULE, *S_LOCK,
    *S_ACQUIRE, *S_RELEASE, *WS;

#define RING_BLOCK 512 /* frames.py's RingBuffer.BLOCK (checked when a QuickTrade is made) */

/* time.time(), as the Python takers stamp a row */
static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* An int attribute into *out: 1; 0 when it is not an int (the Python path then says why);
 * -1 on an error. */
static int get_ll(PyObject *o, PyObject *name, long long *out) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    int ok = PyLong_CheckExact(v);
    *out = ok ? PyLong_AsLongLong(v) : 0;
    Py_DECREF(v);
    if (ok && *out == -1 && PyErr_Occurred())
        return -1;
    return ok;
}

/* obj.name = value (a new reference, dropped); -1 on an error */
static int set_new(PyObject *o, PyObject *name, PyObject *value) {
    if (value == NULL)
        return -1;
    int rc = PyObject_SetAttr(o, name, value);
    Py_DECREF(value);
    return rc;
}

/* 1 when obj.name is None, an empty list or an empty dict (nothing to tell), 0 when not, -1 on
 * an error */
static int attr_idle(PyObject *o, PyObject *name) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    int idle = v == Py_None || (PyList_CheckExact(v) && PyList_GET_SIZE(v) == 0) ||
               (PyDict_CheckExact(v) && PyDict_GET_SIZE(v) == 0);
    Py_DECREF(v);
    return idle;
}

/* The status row's counters for one more record taken (Intake's takers): mark, messages, time
 * received, source. */
static int row_taken(PyObject *stats, long long mark, double now) {
    long long messages;
    int r = get_ll(stats, S_MESSAGES, &messages);
    if (r <= 0)
        return r < 0 ? -1
                     : (PyErr_SetString(PyExc_TypeError, "a row's messages is not an int"), -1);
    if (set_new(stats, S_MARK, PyLong_FromLongLong(mark)) < 0 ||
        set_new(stats, S_MESSAGES, PyLong_FromLongLong(messages + 1)) < 0 ||
        set_new(stats, S_LAST_RECEIVED, PyFloat_FromDouble(now)) < 0 ||
        PyObject_SetAttr(stats, S_SOURCE, WS) < 0)
        return -1;
    return 0;
}

/* a new tuple of `n` new references (NULL where one failed, then all are dropped) */
static PyObject *tuple_of(PyObject **items, Py_ssize_t n) {
    PyObject *t = PyTuple_New(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (items[i] == NULL || t == NULL) {
            for (Py_ssize_t j = i; j < n; j++)
                Py_XDECREF(items[j]);
            Py_XDECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, items[i]);
    }
    return t;
}

/* --- QuickTrade -------------------------------------------------------------------------- */

typedef struct {
    QuickTaker base;
    PyObject *stats, *state, *buffer, *symbol;
} QuickTrade;

static int trade_take(QuickTaker *q, const char *frame, const uint64_t *v, const Levels *lv) {
    QuickTrade *t = (QuickTrade *)q;
    long long tid = I(v, TR_T), mark, last_id;
    int r;
    if (!span_is(t->symbol, frame, v[TR_S])) /* the payload's symbol is the lane's */
        return 0;
    /* in order after the newest taken (a repeat or a gap: Intake._take_trade) */
    if ((r = get_ll(t->stats, S_MARK, &mark)) <= 0)
        return r;
    if (tid <= mark || (mark >= 0 && tid != mark + 1))
        return 0;
    if ((r = attr_idle(t->state, S_CALLBACKS)) <= 0) /* subscribers: MarketState.notify */
        return r;
    if ((r = get_ll(t->buffer, S_LAST_ID, &last_id)) <= 0)
        return r;
    if (tid <= last_id || (last_id >= 0 && tid != last_id + 1)) /* TradeBuffer's own count */
        return 0;
    PyObject *ring = PyObject_GetAttr(t->buffer, S_RING);
    PyObject *pending = ring ? PyObject_GetAttr(ring, S_PENDING) : NULL;
    PyObject *trades = pending ? PyObject_GetAttr(t->state, S_LAST_TRADE) : NULL;
    if (trades == NULL || !PyList_CheckExact(pending) || !PyDict_CheckExact(trades)) {
        Py_XDECREF(ring);
        Py_XDECREF(pending);
        Py_XDECREF(trades);
        return PyErr_Occurred() ? -1 : 0;
    }
    double now = wall_now(), price = F(v, TR_P);
    int rc = -1;
    if (row_taken(t->stats, tid, now) < 0)
        goto done;
    PyObject *row[] = {PyLong_FromLongLong(I(v, TR_TIME)), PyFloat_FromDouble(price),
                       PyFloat_FromDouble(F(v, TR_Q)), PyLong_FromLong(v[TR_M] ? 1 : 0),
                       PyLong_FromLongLong(tid)};
    PyObject *tuple = tuple_of(row, 5);
    if (tuple == NULL || PyList_Append(pending, tuple) < 0) {
        Py_XDECREF(tuple);
        goto done;
    }
    Py_DECREF(tuple);
    if (set_new(t->buffer, S_LAST_ID, PyLong_FromLongLong(tid)) < 0)
        goto done;
    if (PyList_GET_SIZE(pending) >= RING_BLOCK) {
        PyObject *res = PyObject_CallMethodNoArgs(ring, S_FLUSH);
        if (res == NULL)
            goto done;
        Py_DECREF(res);
    }
    PyObject *last[] = {PyFloat_FromDouble(price), PyLong_FromLongLong(I(v, TR_TIME)),
                        PyFloat_FromDouble(now), Py_NewRef(WS)};
    PyObject *held = tuple_of(last, 4);
    if (held == NULL)
        goto done;
    rc = PyDict_SetItem(trades, t->symbol, held) < 0 ? -1 : 1;
    Py_DECREF(held);
done:
    Py_DECREF(ring);
    Py_DECREF(pending);
    Py_DECREF(trades);
    return rc;
}

static PyObject *QuickTrade_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *stats, *state, *buffer, *symbol;
    if (!PyArg_ParseTuple(args, "OOOU:QuickTrade", &stats, &state, &buffer, &symbol))
        return NULL;
    if (!PyUnicode_IS_COMPACT_ASCII(symbol)) {
        PyErr_SetString(PyExc_ValueError, "a symbol is ASCII");
        return NULL;
    }
    QuickTrade *t = (QuickTrade *)type->tp_alloc(type, 0);
    if (t == NULL)
        return NULL;
    t->base.take = trade_take;
    t->stats = Py_NewRef(stats);
    t->state = Py_NewRef(state);
    t->buffer = Py_NewRef(buffer);
    t->symbol = Py_NewRef(symbol);
    return (PyObject *)t;
}

static int QuickTrade_traverse(QuickTrade *t, visitproc visit, void *arg) {
    Py_VISIT(t->stats);
    Py_VISIT(t->state);
    Py_VISIT(t->buffer);
    return 0;
}

static int QuickTrade_clear(QuickTrade *t) {
    Py_CLEAR(t->stats);
    Py_CLEAR(t->state);
    Py_CLEAR(t->buffer);
    return 0;
}

static void QuickTrade_dealloc(QuickTrade *t) {
    PyObject_GC_UnTrack(t);
    QuickTrade_clear(t);
    Py_CLEAR(t->symbol);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyTypeObject QuickTradeType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "marketlab._native.QuickTrade",
    .tp_basicsize = sizeof(QuickTrade),
    .tp_dealloc = (destructor)QuickTrade_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)QuickTrade_traverse,
    .tp_clear = (inquiry)QuickTrade_clear,
    .tp_doc = "QuickTrade(stats, state, buffer, symbol): a trade stream's common case, compiled.",
    .tp_new = QuickTrade_new,
};

/* --- QuickDelta -------------------------------------------------------------------------- */

typedef struct {
    QuickTaker base;
    PyObject *stats, *feed, *locked, *state, *symbol, *synced, *fetch, *acquire, *release;
} QuickDelta;

/* A float attribute's value; NAN when it is not a float (never the common case); -1 on error */
static int get_double(PyObject *o, PyObject *name, double *out) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    *out = PyFloat_CheckExact(v) ? PyFloat_AS_DOUBLE(v) : NAN;
    Py_DECREF(v);
    return 0;
}

/* Whether the feed, the sink and the book are as in the common case (1), not (0), or -1.
 * `book`, `bids`, `asks` are new references when 1. */
static int delta_common(QuickDelta *d, int64_t first, int64_t last, PyObject **book,
                        PyObject **bids, PyObject **asks) {
    long long mark, held;
    double floor, ceiling;
    int r;
    if ((r = get_ll(d->stats, S_MARK, &mark)) <= 0)
        return r;
    if (last <= mark) /* a repeat (Intake._take_delta) */
        return 0;
    if ((r = attr_idle(d->feed, S_BOOK_TAP)) <= 0 || (r = attr_idle(d->feed, S_SHADOWS)) <= 0 ||
        (r = attr_idle(d->state, S_DELTA_STORE)) <= 0 ||
        (r = attr_idle(d->state, S_CALLBACKS)) <= 0)
        return r;
    *book = PyObject_GetAttr(d->locked, S_BOOK);
    if (*book == NULL)
        return -1;
    PyObject *state = PyObject_GetAttr(*book, S_STATE);
    if (state == NULL)
        goto fail;
    Py_DECREF(state);
    if (state != d->synced) /* buffering (OrderBook.on_delta) */
        goto other;
    if ((r = get_ll(*book, S_LAST_UPDATE_ID, &held)) <= 0)
        goto other_or_fail;
    if (last <= held || first > held + 1) /* in the book already, or a gap */
        goto other;
    if (get_double(*book, S_BID_FLOOR, &floor) < 0 ||
        get_double(*book, S_ASK_CEILING, &ceiling) < 0)
        goto fail;
    if (!(floor == -Py_HUGE_VAL && ceiling == Py_HUGE_VAL)) /* a cut snapshot: its range checked */
        goto other;
    *bids = PyObject_GetAttr(*book, S_BIDS);
    *asks = *bids ? PyObject_GetAttr(*book, S_ASKS) : NULL;
    if (*asks == NULL) {
        Py_XDECREF(*bids);
        goto fail;
    }
    if (Py_TYPE(*bids) == &SideType && Py_TYPE(*asks) == &SideType)
        return 1;
    Py_DECREF(*bids);
    Py_DECREF(*asks);
    goto other;
other_or_fail:
    if (r < 0)
        goto fail;
other:
    Py_DECREF(*book);
    return 0;
fail:
    Py_DECREF(*book);
    return -1;
}

static int delta_take(QuickTaker *q, const char *frame, const uint64_t *v, const Levels *lv) {
    QuickDelta *d = (QuickDelta *)q;
    PyObject *book, *bids, *asks, *action = NULL;
    int64_t first = I(v, DP_FIRST), last = I(v, DP_LAST);
    if (!span_is(d->symbol, frame, v[DP_S]))
        return 0;
    int r = delta_common(d, first, last, &book, &bids, &asks);
    if (r <= 0)
        return r;
    int rc = -1;
    /* the book's lock, not waited for: a reader holding it is waited for on the Python way */
    PyObject *got = PyObject_CallOneArg(d->acquire, Py_False);
    if (got == NULL || got != Py_True) {
        rc = got == NULL ? -1 : 0;
        Py_XDECREF(got);
        goto done;
    }
    Py_DECREF(got);
    /* OrderBook.on_delta's hot path: both sides, then the book's id, time and count */
    Side *b = (Side *)bids, *a = (Side *)asks;
    uint64_t bs = v[DP_BIDS], as = v[DP_ASKS];
    long long max_levels = 0, applied = 0;
    PyObject *bstats = NULL;
    int ok = side_apply_pairs(b, lv->v + 2 * SPAN_AT(bs), SPAN_LEN(bs), -1.0) == 0 &&
             side_apply_pairs(a, lv->v + 2 * SPAN_AT(as), SPAN_LEN(as), 1.0) == 0 &&
             set_new(book, S_LAST_UPDATE_ID, PyLong_FromLongLong(last)) == 0 &&
             set_new(book, S_EVENT_TIME, PyLong_FromLongLong(I(v, DP_E))) == 0 &&
             (bstats = PyObject_GetAttr(book, S_STATS)) != NULL &&
             get_ll(bstats, S_APPLIED, &applied) > 0 &&
             set_new(bstats, S_APPLIED, PyLong_FromLongLong(applied + 1)) == 0 &&
             get_ll(book, S_MAX_LEVELS, &max_levels) > 0;
    Py_XDECREF(bstats);
    if (ok) {
        /* a side past its bound, or the book crossed: the book's own Python settles it */
        Py_ssize_t slack = (Py_ssize_t)(max_levels + max_levels / 10);
        int crossed = b->n && a->n && -b->lv[b->n - 1].key >= a->lv[a->n - 1].key;
        if (b->n > slack || a->n > slack || crossed) {
            PyObject *at = PyLong_FromLongLong(last);
            action = at ? PyObject_CallMethodOneArg(book, S_SETTLED, at) : NULL;
            Py_XDECREF(at);
            ok = action != NULL;
        }
    }
    PyObject *freed = PyObject_CallNoArgs(d->release);
    if (freed == NULL)
        goto done;
    Py_DECREF(freed);
    if (!ok) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "a book's counters are not ints");
        goto done;
    }
    if (row_taken(d->stats, last, wall_now()) < 0)
        goto done;
    if (action == d->fetch) { /* BookSync._delta: a new snapshot is due */
        PyObject *res = PyObject_CallMethodOneArg(d->feed, S_SCHEDULE, d->symbol);
        if (res == NULL)
            goto done;
        Py_DECREF(res);
    }
    rc = 1;
done:
    Py_XDECREF(action);
    Py_DECREF(book);
    Py_DECREF(bids);
    Py_DECREF(asks);
    return rc;
}

static PyObject *QuickDelta_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *stats, *feed, *locked, *state, *symbol, *synced, *fetch;
    if (!PyArg_ParseTuple(args, "OOOOUOO:QuickDelta", &stats, &feed, &locked, &state, &symbol,
                          &synced, &fetch))
        return NULL;
    if (!PyUnicode_IS_COMPACT_ASCII(symbol)) {
        PyErr_SetString(PyExc_ValueError, "a symbol is ASCII");
        return NULL;
    }
    PyObject *lock = PyObject_GetAttr(locked, S_LOCK);
    if (lock == NULL)
        return NULL;
    QuickDelta *d = (QuickDelta *)type->tp_alloc(type, 0);
    if (d == NULL) {
        Py_DECREF(lock);
        return NULL;
    }
    d->base.take = delta_take;
    d->acquire = PyObject_GetAttr(lock, S_ACQUIRE);
    d->release = PyObject_GetAttr(lock, S_RELEASE);
    Py_DECREF(lock);
    d->stats = Py_NewRef(stats);
    d->feed = Py_NewRef(feed);
    d->locked = Py_NewRef(locked);
    d->state = Py_NewRef(state);
    d->symbol = Py_NewRef(symbol);
    d->synced = Py_NewRef(synced);
    d->fetch = Py_NewRef(fetch);
    if (d->acquire == NULL || d->release == NULL) {
        Py_DECREF(d);
        return NULL;
    }
    return (PyObject *)d;
}

static int QuickDelta_traverse(QuickDelta *d, visitproc visit, void *arg) {
    Py_VISIT(d->stats);
    Py_VISIT(d->feed); /* the feed holds its lanes: a cycle */
    Py_VISIT(d->locked);
    Py_VISIT(d->state);
    Py_VISIT(d->synced);
    Py_VISIT(d->fetch);
    Py_VISIT(d->acquire);
    Py_VISIT(d->release);
    return 0;
}

static int QuickDelta_clear(QuickDelta *d) {
    Py_CLEAR(d->stats);
    Py_CLEAR(d->feed);
    Py_CLEAR(d->locked);
    Py_CLEAR(d->state);
    Py_CLEAR(d->synced);
    Py_CLEAR(d->fetch);
    Py_CLEAR(d->acquire);
    Py_CLEAR(d->release);
    return 0;
}

static void QuickDelta_dealloc(QuickDelta *d) {
    PyObject_GC_UnTrack(d);
    QuickDelta_clear(d);
    Py_CLEAR(d->symbol);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static PyTypeObject QuickDeltaType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "marketlab._native.QuickDelta",
    .tp_basicsize = sizeof(QuickDelta),
    .tp_dealloc = (destructor)QuickDelta_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)QuickDelta_traverse,
    .tp_clear = (inquiry)QuickDelta_clear,
    .tp_doc = "QuickDelta(stats, feed, locked_book, state, symbol, synced, fetch): a book "
              "stream's common case, compiled.",
    .tp_new = QuickDelta_new,
};

int is_quick_taker(PyObject *o) {
    return Py_TYPE(o) == &QuickTradeType || Py_TYPE(o) == &QuickDeltaType;
}

int native_quick_init(PyObject *module) {
    struct {
        PyObject **at;
        const char *s;
    } names[] = {{&S_MARK, "mark"},
                 {&S_MESSAGES, "messages"},
                 {&S_LAST_RECEIVED, "last_received"},
                 {&S_SOURCE, "source"},
                 {&S_CALLBACKS, "callbacks"},
                 {&S_LAST_ID, "last_id"},
                 {&S_RING, "ring"},
                 {&S_PENDING, "_pending"},
                 {&S_FLUSH, "flush"},
                 {&S_LAST_TRADE, "_last_trade"},
                 {&S_BOOK_TAP, "book_tap"},
                 {&S_SHADOWS, "_shadows"},
                 {&S_DELTA_STORE, "delta_store"},
                 {&S_BOOK, "book"},
                 {&S_STATE, "state"},
                 {&S_LAST_UPDATE_ID, "last_update_id"},
                 {&S_EVENT_TIME, "event_time"},
                 {&S_STATS, "stats"},
                 {&S_APPLIED, "applied"},
                 {&S_BIDS, "_bids"},
                 {&S_ASKS, "_asks"},
                 {&S_BID_FLOOR, "bid_floor"},
                 {&S_ASK_CEILING, "ask_ceiling"},
                 {&S_MAX_LEVELS, "max_levels"},
                 {&S_SETTLED, "_settled"},
                 {&S_SCHEDULE, "_schedule_snapshot"},
                 {&S_LOCK, "lock"},
                 {&S_ACQUIRE, "acquire"},
                 {&S_RELEASE, "release"},
                 {&WS, "ws"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if ((*names[i].at = PyUnicode_InternFromString(names[i].s)) == NULL)
            return -1;
    if (PyType_Ready(&QuickTradeType) < 0 || PyType_Ready(&QuickDeltaType) < 0 ||
        PyModule_AddObjectRef(module, "QuickTrade", (PyObject *)&QuickTradeType) < 0 ||
        PyModule_AddObjectRef(module, "QuickDelta", (PyObject *)&QuickDeltaType) < 0 ||
        PyModule_AddIntConstant(module, "RING_BLOCK", RING_BLOCK) < 0)
        return -1;
    return 0;
}
