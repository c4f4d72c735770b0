/* What the frame readers (csrc/binance.c, okx.c, bybit.c, coinbase.c) share to find a name and
 * to make records: each reads its own venue's frames its own way, but makes its records, and
 * declares their values, alike. Included after native.h. */
#ifndef MARKETLAB_RECORDS_H
#define MARKETLAB_RECORDS_H
#include "native.h"

/* A record's values are new references, made in place in the argument list */
#define INT(x) PyLong_FromLongLong(x)
#define FLT(x) PyFloat_FromDouble(x)

/* `make(*args)` of `n` new references (NULL where one failed), which are dropped: a record's
 * values made in its argument list, any of them failing, make no record and leak nothing. */
static inline PyObject *build(PyObject *make, PyObject **args, Py_ssize_t n) {
    PyObject *rec = NULL;
    Py_ssize_t i;
    for (i = 0; i < n; i++)
        if (args[i] == NULL)
            break;
    if (i == n)
        rec = PyObject_Vectorcall(make, args, (size_t)n, NULL);
    for (i = 0; i < n; i++)
        Py_XDECREF(args[i]);
    return rec;
}

/* FNV-1a of a name (a stream, a topic, a product): the readers' tables find a frame's lane by
 * it with open addressing, without the GIL. */
static inline uint64_t name_hash(const char *s, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* A tuple of two new references (stolen; NULL if either is), untracked: a book level's two
 * floats, or its two strs, are part of no cycle, so a collection need not look at them. */
static inline PyObject *pair_of(PyObject *a, PyObject *b) {
    PyObject *t = a && b ? PyTuple_New(2) : NULL;
    if (t == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, a);
    PyTuple_SET_ITEM(t, 1, b);
    PyObject_GC_UnTrack(t);
    return t;
}

/* A book level as the records hold it: (price, qty), two floats. */
static inline PyObject *level_of(double price, double qty) {
    return pair_of(FLT(price), FLT(qty));
}

/* `item` (a new reference, dropped; NULL on an error) appended to `list`: 0, or -1. */
static inline int append_new(PyObject *list, PyObject *item) {
    if (item == NULL)
        return -1;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc;
}

/* The values of the records every reader makes alike (marketlab.records' Trade, Ticker and
 * Kline), in the order a reader hands them to `make`: one order, declared once, which each
 * reader's *_VALUES lists and the Python side checks its classes against. */
#define TRADE_VALUE_NAMES "symbol", "trade_id", "price", "qty", "side", "time", "event_time"
#define TICKER_VALUE_NAMES                                                                    \
    "symbol", "event_time", "last", "last_qty", "bid", "bid_qty", "ask", "ask_qty", "open",   \
        "high", "low", "volume", "quote_volume", "change", "change_pct", "weighted_avg",      \
        "prev_close", "open_time", "close_time", "first_trade_id", "last_trade_id", "trades"
#define KLINE_VALUE_NAMES                                                                     \
    "symbol", "interval", "open_time", "open", "high", "low", "close", "volume",             \
        "close_time", "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume", \
        "closed", "event_time"

/* What a reader exports of its records, {record name: tuple of its values' names, in `make`'s
 * order}, of `count` records: `names[k]` and its NULL-ended `values[k]`. The Python side checks
 * its record classes against it (marketlab.native.maker), so neither mirrors the other. */
static inline PyObject *values_by_record(const char *const *names,
                                         const char *const *const *values, int count) {
    PyObject *d = PyDict_New();
    for (int k = 0; d != NULL && k < count; k++) {
        Py_ssize_t n = 0;
        while (values[k][n] != NULL)
            n++;
        PyObject *tuple = PyTuple_New(n);
        for (Py_ssize_t i = 0; tuple != NULL && i < n; i++) {
            PyObject *s = PyUnicode_InternFromString(values[k][i]);
            if (s == NULL)
                Py_CLEAR(tuple);
            else
                PyTuple_SET_ITEM(tuple, i, s);
        }
        if (tuple == NULL || PyDict_SetItemString(d, names[k], tuple) < 0)
            Py_CLEAR(d);
        Py_XDECREF(tuple);
    }
    return d;
}

#endif
