/* Binance combined frames, compiled: a frame {"stream":"NAME","data":PAYLOAD} of one of our
 * streams straight to its record and its taker, without the wire struct in between.
 *
 * LaneTable(refused): a type that owns a feed's lanes, by stream name. add(name, payload, make,
 *   take, stats, symbol, interval, decode, convert) adds one: `payload` names what this reader
 *   reads of it (a key of PAYLOADS: "trade", "depth", "kline", "ticker"; "" leaves its payloads
 *   to `convert(decode(payload))`, whose `refused` exceptions say "not this way"). A payload
 *   read is made into its record by `make(*values)`, the values in the order PAYLOADS names
 *   them (the Python side checks its record class against them, and hands an adapter where
 *   they differ), and handed to `take(stats, record, "ws")`.
 * take_combined(table, frame) -> bool
 *   True when the record went to its lane's taker; False when the frame is anything else (an
 *   unknown stream, a control event, a payload that is malformed or merely unusual: escapes, a
 *   missing field, a number out of range) - the caller's careful decoder takes those and says
 *   what is wrong.
 * The twin of binance/frames.py's take_combined_python: numbers are read to the same double
 * (exact decimal fast path, else Python's correctly rounded conversion), strings equal to the
 * lane's symbol or interval are that very object.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "native.h"
#include "records.h"

/* What this reader reads of a lane's payloads (K_OTHER: nothing, msgspec's decoder does) */
enum { K_OTHER = 0, K_TRADE = 1, K_DEPTH = 2, K_KLINE = 3, K_TICKER = 4 };
static const char *const PAYLOAD_NAMES[] = {"", "trade", "depth", "kline", "ticker"};

/* The values of each payload's record, in the order `make` is given them (record_of's) */
static const char *const TRADE_VALUES[] = {TRADE_VALUE_NAMES, NULL};
static const char *const DEPTH_VALUES[] = {"symbol", "first_update_id", "last_update_id",
                                           "bids",   "asks",            "event_time", NULL};
static const char *const KLINE_VALUES[] = {KLINE_VALUE_NAMES, NULL};
static const char *const TICKER_VALUES[] = {TICKER_VALUE_NAMES, NULL};
static const char *const *const VALUES[] = {NULL, TRADE_VALUES, DEPTH_VALUES, KLINE_VALUES,
                                            TICKER_VALUES};

static PyObject *BUY, *SELL, *WS;

#include "json_cursor.h"

/* --- payload schemas ------------------------------------------------------------------
 * Every field a record takes from a payload has a one-letter key; a table by that letter
 * gives its slot and type. Unknown keys are passed over (msgspec ignores them too); a known
 * key twice, or one missing, leaves the frame to msgspec.
 */

/* A field's type, and for a number the rule it keeps (marketlab/numbers.py, by which
 * the wire structs of binance/frames.py are typed): a number that breaks its rule leaves the
 * frame to msgspec, which refuses it and names it. */
enum {
    T_ID,     /* Id: an int64 >= 0 */
    T_ID_OR,  /* IdOrNone: an int64 >= -1 */
    T_TIME,   /* TimeMs: ms since the epoch within TIME_MIN_MS..TIME_MAX_MS */
    T_AMOUNT, /* Amount: finite, >= 0 (-0.0 is 0) */
    T_PRICE,  /* Price: finite, > 0 */
    T_CHANGE, /* Change: finite */
    T_BOOL,
    T_STR,
    T_SYMBOL, /* a string that must be the lane's symbol */
    T_INTERVAL, /* a string that must be the lane's interval */
    T_LEVELS,
    T_KLINE
};
#define TIME_MIN_MS 1262304000000LL /* 2010-01-01 */
#define TIME_MAX_MS 4102444800000LL /* 2100-01-01 */

typedef struct {
    char key;
    char type;
} Field;

typedef struct {
    int n;
    signed char slot[128]; /* by key letter: the field's slot, or -1 */
    char type[32];
} Schema;

/* Each payload's fields by the protocol's one-letter keys; a field's place in its table is
 * its slot (an order of this file's own, by which the records are made from the slots) */
static const Field TRADE_FIELDS[] = {{'E', T_TIME},  {'s', T_SYMBOL}, {'t', T_ID},
                                     {'p', T_PRICE}, {'q', T_AMOUNT}, {'T', T_TIME},
                                     {'m', T_BOOL},   {0, 0}};
static const Field DEPTH_FIELDS[] = {{'E', T_TIME}, {'s', T_SYMBOL},  {'U', T_ID},
                                     {'u', T_ID},   {'b', T_LEVELS}, {'a', T_LEVELS},
                                     {0, 0}};
/* a kline's record takes its symbol from its body (`k`), which is checked */
static const Field KLINE_FIELDS[] = {{'E', T_TIME}, {'s', T_STR}, {'k', T_KLINE}, {0, 0}};
static const Field BODY_FIELDS[] = {
    {'t', T_TIME},   {'T', T_TIME},   {'s', T_SYMBOL}, {'i', T_INTERVAL}, {'o', T_AMOUNT},
    {'c', T_AMOUNT}, {'h', T_AMOUNT}, {'l', T_AMOUNT}, {'v', T_AMOUNT},   {'n', T_ID},
    {'x', T_BOOL},   {'q', T_AMOUNT}, {'V', T_AMOUNT}, {'Q', T_AMOUNT},   {0, 0}};
static const Field TICKER_FIELDS[] = {
    {'E', T_TIME},   {'s', T_SYMBOL}, {'p', T_CHANGE}, {'P', T_CHANGE}, {'w', T_AMOUNT},
    {'x', T_AMOUNT}, {'c', T_AMOUNT}, {'Q', T_AMOUNT}, {'b', T_AMOUNT}, {'B', T_AMOUNT},
    {'a', T_AMOUNT}, {'A', T_AMOUNT}, {'o', T_AMOUNT}, {'h', T_AMOUNT}, {'l', T_AMOUNT},
    {'v', T_AMOUNT}, {'q', T_AMOUNT}, {'O', T_TIME},   {'C', T_TIME},   {'F', T_ID_OR},
    {'L', T_ID_OR},  {'n', T_ID},     {0, 0}};

static Schema TRADE, DEPTH, KLINE, BODY, TICKER;

/* Slots a payload of each kind fills (a kline: its three outer fields, then its body's) */
static const int FILLED[] = {0, 7, 6, BODY_SLOTS + 14, 22};

static void schema_init(Schema *s, const Field *f) {
    memset(s->slot, -1, sizeof(s->slot));
    for (s->n = 0; f[s->n].key; s->n++) {
        s->slot[(int)f[s->n].key] = (signed char)s->n;
        s->type[s->n] = f[s->n].type;
    }
}

/* --- reading a payload: into slots, no Python object made -------------------------------- */

static int levels_push(Levels *lv, double price, double qty) {
    if (lv->n == lv->cap) {
        size_t cap = lv->cap ? 2 * lv->cap : 1024;
        double *v; /* no GIL needed */
        if (lv->borrowed) {
            v = PyMem_RawMalloc(cap * 2 * sizeof(double));
            if (v != NULL && lv->n)
                memcpy(v, lv->v, lv->n * 2 * sizeof(double));
        } else {
            v = PyMem_RawRealloc(lv->v, cap * 2 * sizeof(double));
        }
        if (v == NULL)
            return 0;
        lv->v = v;
        lv->cap = cap;
        lv->borrowed = 0;
    }
    lv->v[2 * lv->n] = price;
    lv->v[2 * lv->n + 1] = qty;
    lv->n++;
    return 1;
}


/* [[price, qty], ...] into `lv`; its (first, count) in *out. */
static int read_levels(Cur *c, Levels *lv, uint64_t *out) {
    size_t first = lv->n;
    if (!eat(c, '['))
        return 0;
    if (!eat(c, ']')) {
        do {
            double price, qty;
            if (!eat(c, '[') || !read_float(c, &price) || !eat(c, ',') ||
                !read_float(c, &qty) || !eat(c, ']') || !(price > 0.0) || !(qty >= 0.0) ||
                !levels_push(lv, price, qty))
                return 0;
        } while (eat(c, ','));
        if (!eat(c, ']'))
            return 0;
    }
    if (lv->n - first > SPAN_MAX || first > UINT32_MAX)
        return 0;
    *out = SPAN(first, lv->n - first);
    return 1;
}

/* What a payload must name: its lane's symbol and interval (ASCII, as in the stream name). */
typedef struct {
    const char *symbol, *interval;
    Py_ssize_t symbol_len, interval_len;
} Owner;

static inline int is_text(const char *s, Py_ssize_t n, const char *want, Py_ssize_t want_len) {
    return n == want_len && memcmp(s, want, (size_t)n) == 0;
}

/* One JSON object of `schema` into slots `v` (a kline's body into `body`); 1 when every field
 * was there, read as this reader reads it and within its rule, else 0 (nothing to undo: slots
 * are plain). */
static int read_object(Cur *c, const char *base, const Schema *schema, uint64_t *v,
                       uint64_t *body, Levels *lv, const Owner *own) {
    uint32_t seen = 0;
    if (!eat(c, '{') || eat(c, '}'))
        return 0;
    do {
        const char *key;
        Py_ssize_t klen;
        if (!plain_string(c, &key, &klen) || !eat(c, ':'))
            return 0;
        int slot = (klen == 1 && (unsigned char)key[0] < 128) ? schema->slot[(int)key[0]] : -1;
        if (slot < 0) {
            if (!skip_value(c, 0))
                return 0;
            continue;
        }
        if (seen & (1u << slot))
            return 0;
        seen |= 1u << slot;
        int ok = 0, flag = 0;
        int64_t i = 0;
        double f = 0;
        const char *s = base;
        Py_ssize_t n = 0;
        switch (schema->type[slot]) {
        case T_ID:
        case T_ID_OR:
        case T_TIME:
            ok = read_int(c, &i);
            ok = ok && (schema->type[slot] == T_ID      ? i >= 0
                        : schema->type[slot] == T_ID_OR ? i >= -1
                                                        : i >= TIME_MIN_MS && i <= TIME_MAX_MS);
            v[slot] = (uint64_t)i;
            break;
        case T_AMOUNT:
        case T_PRICE:
        case T_CHANGE: /* read_float gives finite numbers only */
            ok = read_float(c, &f) && (schema->type[slot] == T_CHANGE ? 1
                                       : schema->type[slot] == T_PRICE ? f > 0.0
                                                                       : f >= 0.0);
            memcpy(&v[slot], &f, sizeof(f));
            break;
        case T_BOOL:
            ok = read_bool(c, &flag);
            v[slot] = (uint64_t)flag;
            break;
        case T_STR:
        case T_SYMBOL:
        case T_INTERVAL:
            ok = plain_string(c, &s, &n) && n <= (Py_ssize_t)SPAN_MAX;
            if (ok && schema->type[slot] == T_SYMBOL)
                ok = is_text(s, n, own->symbol, own->symbol_len);
            else if (ok && schema->type[slot] == T_INTERVAL)
                ok = is_text(s, n, own->interval, own->interval_len);
            v[slot] = SPAN(s - base, n);
            break;
        case T_LEVELS:
            ok = read_levels(c, lv, &v[slot]);
            break;
        case T_KLINE:
            ok = body != NULL && read_object(c, base, &BODY, body, NULL, lv, own);
            break;
        }
        if (!ok)
            return 0;
    } while (eat(c, ','));
    if (!eat(c, '}'))
        return 0;
    return seen == (1u << schema->n) - 1u; /* every field there */
}

/* A payload of kind `code` into `out` (levels appended to `lv`, dropped again when it is not
 * read; strings as spans from `base`, the start of its frame). 1: read; 0: not for this reader.
 * `gil`: whether the caller holds it. */
static int read_payload(int code, const char *base, const char *s, Py_ssize_t n, Slots *out,
                        Levels *lv, const Owner *own, int gil) {
    const Schema *schema = code == K_TRADE   ? &TRADE
                           : code == K_DEPTH ? &DEPTH
                           : code == K_KLINE ? &KLINE
                                             : &TICKER;
    size_t mark = lv->n;
    Cur c = {s, s + n, gil};
    if (read_object(&c, base, schema, out->v, out->v + BODY_SLOTS, lv, own)) {
        skip_ws(&c);
        if (c.p == c.end)
            return 1;
    }
    lv->n = mark;
    return 0;
}

/* --- building a record from its slots (with the GIL) ------------------------------------- */

/* A string read: the lane's symbol or interval when it is equal (no new str per record). */
static PyObject *str_at(const char *base, uint64_t span, PyObject *a, PyObject *b) {
    PyObject *cands[2] = {a, b};
    for (int i = 0; i < 2; i++)
        if (PyUnicode_CheckExact(cands[i]) && span_is(cands[i], base, span))
            return Py_NewRef(cands[i]);
    /* plain strings are ASCII */
    return PyUnicode_DecodeASCII(base + SPAN_AT(span), (Py_ssize_t)SPAN_LEN(span), "strict");
}

static PyObject *levels_at(const Levels *lv, uint64_t span) {
    size_t first = SPAN_AT(span), n = SPAN_LEN(span);
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (list == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const double *pair = lv->v + 2 * (first + i);
        PyObject *level = level_of(pair[0], pair[1]);
        if (level == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, level);
    }
    return list;
}

/* The record of a payload read into slots `v` (its strings lie from `base`, its frame): `make`
 * given the values named by the payload's *_VALUES, in that order. */
static PyObject *record_of(int code, PyObject *make, const char *base, const uint64_t *v,
                           const Levels *lv, PyObject *sym, PyObject *interval) {
    const uint64_t *k = v + BODY_SLOTS;
    if (code == K_TRADE) { /* TRADE_VALUES: s, t, p, q, side, T, E */
        PyObject *a[] = {str_at(base, v[1], sym, interval), INT(I(v, 2)), FLT(F(v, 3)),
                         FLT(F(v, 4)), Py_NewRef(v[6] ? SELL : BUY), INT(I(v, 5)), INT(I(v, 0))};
        return build(make, a, 7);
    }
    if (code == K_DEPTH) { /* DEPTH_VALUES: s, U, u, b, a, E */
        PyObject *a[] = {str_at(base, v[1], sym, interval), INT(I(v, 2)), INT(I(v, 3)),
                         levels_at(lv, v[4]), levels_at(lv, v[5]), INT(I(v, 0))};
        return build(make, a, 6);
    }
    if (code == K_KLINE) { /* KLINE_VALUES: k.s, k.i, k.t, o, h, l, c, v, k.T, q, n, V, Q, x, E */
        PyObject *a[] = {str_at(base, k[2], sym, interval), str_at(base, k[3], sym, interval),
                         INT(I(k, 0)), FLT(F(k, 4)), FLT(F(k, 6)), FLT(F(k, 7)), FLT(F(k, 5)),
                         FLT(F(k, 8)), INT(I(k, 1)), FLT(F(k, 11)), INT(I(k, 9)), FLT(F(k, 12)),
                         FLT(F(k, 13)), PyBool_FromLong((long)k[10]), INT(I(v, 0))};
        return build(make, a, 15);
    }
    /* TICKER_VALUES: s, E, c, Q, b, B, a, A, o, h, l, v, q, p, P, w, x, O, C, F, L, n */
    PyObject *a[] = {str_at(base, v[1], sym, interval), INT(I(v, 0)), FLT(F(v, 6)),
                     FLT(F(v, 7)),  FLT(F(v, 8)),  FLT(F(v, 9)),  FLT(F(v, 10)), FLT(F(v, 11)),
                     FLT(F(v, 12)), FLT(F(v, 13)), FLT(F(v, 14)), FLT(F(v, 15)), FLT(F(v, 16)),
                     FLT(F(v, 2)),  FLT(F(v, 3)),  FLT(F(v, 4)),  FLT(F(v, 5)),  INT(I(v, 17)),
                     INT(I(v, 18)), INT(I(v, 19)), INT(I(v, 20)), INT(I(v, 21))};
    return build(make, a, 22);
}

/* --- the frame ------------------------------------------------------------------------- */

static const char COMBINED[] = "{\"stream\":\"";
static const char DATA[] = "\",\"data\":";

/* A combined frame's stream name and payload, by position; 0 when it is not one. */
static int combined_parts(const char *f, Py_ssize_t size, const char **name, Py_ssize_t *nlen,
                          const char **payload, Py_ssize_t *plen) {
    const Py_ssize_t head = sizeof(COMBINED) - 1, sep = sizeof(DATA) - 1;
    if (size < head + sep + 1 || memcmp(f, COMBINED, head) != 0 || f[size - 1] != '}')
        return 0;
    for (Py_ssize_t i = head; i + sep <= size - 1; i++) {
        if (f[i] == '"') { /* a stream name holds no quote: the first one ends it */
            if (memcmp(f + i, DATA, sep) != 0)
                return 0;
            *name = f + head;
            *nlen = i - head;
            *payload = f + i + sep;
            *plen = size - 1 - (i + sep);
            return 1;
        }
    }
    return 0;
}

/* --- LaneTable: a feed's lanes by stream name, owned here ---------------------------------- */

/* One stream's lane: what its payloads are read as and go to. */
typedef struct {
    int32_t code;     /* K_* */
    PyObject *make;   /* make(*values) -> the record (code K_TRADE..K_TICKER) */
    PyObject *take;   /* take(stats, record, "ws") */
    PyObject *stats;  /* the lane's status row, handed to `take` */
    PyObject *symbol; /* str: what its payloads must name; the very str a record is given */
    PyObject *interval;
    PyObject *decode; /* decode(payload bytes) -> wire: payloads this reader leaves */
    PyObject *convert; /* convert(wire) -> the record, or None when it is not the lane's */
    Owner own;        /* the symbol's and interval's UTF-8, held by those strs */
} Lane;

typedef struct {
    char *name; /* NULL: a free slot */
    Py_ssize_t len;
    int32_t lane;
} LaneSlot;

typedef struct {
    FrameReader base;
    PyObject *refused; /* what a lane's decode raises for a payload not of its kind */
    Lane **lanes;      /* each allocated once, never moved: a taker may add lanes meanwhile */
    Py_ssize_t n, cap;
    LaneSlot *slots; /* open addressing by name; at most half full */
    size_t mask;
} LaneTable;

static const Lane *table_find(const LaneTable *t, const char *name, Py_ssize_t n) {
    for (size_t i = name_hash(name, n) & t->mask;; i = (i + 1) & t->mask) {
        const LaneSlot *s = &t->slots[i];
        if (s->name == NULL)
            return NULL;
        if (s->len == n && memcmp(s->name, name, n) == 0)
            return t->lanes[s->lane];
    }
}

/* The lane of a combined frame (its payload's span in *payload, *n); NULL when the frame is
 * not one, or of no stream in the table. */
static const Lane *frame_lane(const LaneTable *t, const char *frame, Py_ssize_t size,
                              const char **payload, Py_ssize_t *n) {
    const char *name;
    Py_ssize_t nlen;
    if (!combined_parts(frame, size, &name, &nlen, payload, n))
        return NULL;
    return table_find(t, name, nlen);
}

/* The lane's taker, given the record (a new reference, dropped); -1 on its error. */
static int take(const Lane *lane, PyObject *record) {
    PyObject *a[] = {lane->stats, record, WS};
    PyObject *r = PyObject_Vectorcall(lane->take, a, 3, NULL);
    Py_DECREF(record);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* A lane's own decoder and converter (a payload this reader does not know): 1, 0 or -1. */
static int take_decoded(const LaneTable *t, const Lane *lane, const char *payload,
                        Py_ssize_t n) {
    PyObject *data = PyBytes_FromStringAndSize(payload, n);
    if (data == NULL)
        return -1;
    PyObject *wire = PyObject_CallOneArg(lane->decode, data);
    Py_DECREF(data);
    if (wire == NULL) {
        if (PyErr_ExceptionMatches(t->refused)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    PyObject *record = PyObject_CallOneArg(lane->convert, wire);
    Py_DECREF(wire);
    if (record == Py_None) { /* not of the lane's stream: the careful path names it */
        Py_DECREF(record);
        return 0;
    }
    return record == NULL ? -1 : (take(lane, record) < 0 ? -1 : 1);
}

/* A payload read into `v`, made into its record and handed to the lane's taker; 0 or -1. */
static int take_read(const Lane *lane, const char *base, const uint64_t *v, const Levels *lv) {
    PyObject *record =
        record_of(lane->code, lane->make, base, v, lv, lane->symbol, lane->interval);
    return record == NULL ? -1 : take(lane, record);
}

PyObject *take_combined(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyObject_TypeCheck(args[0], &LaneTableType)) {
        PyErr_SetString(PyExc_TypeError, "take_combined(lanes: LaneTable, frame)");
        return NULL;
    }
    LaneTable *t = (LaneTable *)args[0];
    PyObject *frame = args[1];
    const char *payload;
    Py_ssize_t n;
    if (!PyBytes_CheckExact(frame))
        return Py_NewRef(Py_False);
    const char *base = PyBytes_AS_STRING(frame);
    const Lane *lane = frame_lane(t, base, PyBytes_GET_SIZE(frame), &payload, &n);
    if (lane == NULL)
        return Py_NewRef(Py_False);
    int r;
    Py_INCREF(t); /* the lane is the table's: held while its taker runs (it may drop it) */
    if (lane->code == K_OTHER) {
        r = take_decoded(t, lane, payload, n);
    } else {
        /* The frame's levels are its own: a taker, or a collection in the middle of making
           the record, may run another collector thread's frame meanwhile. Most fit here. */
        double pairs[2 * 128];
        Levels lv = {pairs, 0, 128, 1};
        Slots sl;
        r = read_payload(lane->code, base, payload, n, &sl, &lv, &lane->own, 1);
        if (r > 0)
            r = take_read(lane, base, sl.v, &lv) < 0 ? -1 : 1;
        if (!lv.borrowed)
            PyMem_RawFree(lv.v);
    }
    Py_DECREF(t);
    return r < 0 ? NULL : Py_NewRef(r ? Py_True : Py_False);
}

/* FrameReader.read: a combined frame of a known payload read into slots, no GIL needed. */
static int table_read(FrameReader *r, const char *frame, Py_ssize_t size, Slots *out,
                      Levels *lv, int32_t *lane_index, int *filled) {
    const LaneTable *t = (const LaneTable *)r;
    const char *name, *payload;
    Py_ssize_t nlen, plen;
    if (!combined_parts(frame, size, &name, &nlen, &payload, &plen))
        return 0;
    for (size_t i = name_hash(name, nlen) & t->mask;; i = (i + 1) & t->mask) {
        const LaneSlot *s = &t->slots[i];
        if (s->name == NULL)
            return 0;
        if (s->len != nlen || memcmp(s->name, name, nlen) != 0)
            continue;
        const Lane *lane = t->lanes[s->lane];
        if (lane->code == K_OTHER ||
            !read_payload(lane->code, frame, payload, plen, out, lv, &lane->own, 0))
            return 0;
        *lane_index = s->lane;
        *filled = FILLED[lane->code];
        return 1;
    }
}

/* FrameReader.take: a frame read by table_read, to its record and taker (with the GIL). */
static int table_take(FrameReader *r, int32_t lane_index, const char *frame, const uint64_t *v,
                      const Levels *lv) {
    LaneTable *t = (LaneTable *)r;
    Py_INCREF(t);
    int rc = take_read(t->lanes[lane_index], frame, v, lv);
    Py_DECREF(t);
    return rc;
}

static void lane_free(Lane *lane) {
    Py_XDECREF(lane->make);
    Py_XDECREF(lane->take);
    Py_XDECREF(lane->stats);
    Py_XDECREF(lane->symbol);
    Py_XDECREF(lane->interval);
    Py_XDECREF(lane->decode);
    Py_XDECREF(lane->convert);
    PyMem_Free(lane);
}

/* add(name, payload, make, take, stats, symbol, interval, decode, convert) */
static PyObject *LaneTable_add(LaneTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "add(name, payload, make, take, stats, symbol, "
                                         "interval, decode, convert)");
        return NULL;
    }
    if (t->base.frozen) {
        PyErr_SetString(PyExc_RuntimeError, "a table read ahead by a recording's reader "
                                            "takes no more lanes");
        return NULL;
    }
    PyObject *name = args[0], *payload = args[1];
    if (!PyBytes_Check(name) || !PyUnicode_Check(payload)) {
        PyErr_SetString(PyExc_TypeError, "a lane's name is bytes and its payload a str");
        return NULL;
    }
    int32_t code = -1;
    for (int32_t k = K_OTHER; k <= K_TICKER; k++)
        if (PyUnicode_CompareWithASCIIString(payload, PAYLOAD_NAMES[k]) == 0)
            code = k;
    if (code < 0) {
        PyErr_Format(PyExc_ValueError, "no payload %R here (PAYLOADS, or \"\")", payload);
        return NULL;
    }
    for (int i = 2; i < 9; i++) {
        if (i != 4 && i != 5 && i != 6 && !PyCallable_Check(args[i]) &&
            !(i == 2 && code == K_OTHER && args[i] == Py_None)) {
            PyErr_Format(PyExc_TypeError, "add: argument %d must be callable", i + 1);
            return NULL;
        }
    }
    if (!PyUnicode_Check(args[5]) || !PyUnicode_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "a lane's symbol and interval are str");
        return NULL;
    }
    const char *key = PyBytes_AS_STRING(name);
    Py_ssize_t len = PyBytes_GET_SIZE(name);
    Lane *lane = PyMem_Calloc(1, sizeof(Lane));
    if (lane == NULL)
        return PyErr_NoMemory();
    lane->code = code;
    lane->own.symbol = PyUnicode_AsUTF8AndSize(args[5], &lane->own.symbol_len);
    lane->own.interval = PyUnicode_AsUTF8AndSize(args[6], &lane->own.interval_len);
    if (lane->own.symbol == NULL || lane->own.interval == NULL) {
        PyMem_Free(lane);
        return NULL;
    }
    /* room: one more lane, and the slots at most half full */
    if (t->n == t->cap) {
        Py_ssize_t cap = t->cap ? 2 * t->cap : 16;
        Lane **lanes = PyMem_Realloc(t->lanes, cap * sizeof(Lane *));
        if (lanes == NULL) {
            PyMem_Free(lane);
            return PyErr_NoMemory();
        }
        t->lanes = lanes;
        t->cap = cap;
    }
    if (2 * (size_t)(t->n + 1) > t->mask + 1) {
        size_t size = 2 * (t->mask + 1);
        LaneSlot *slots = PyMem_Calloc(size, sizeof(LaneSlot));
        if (slots == NULL) {
            PyMem_Free(lane);
            return PyErr_NoMemory();
        }
        for (size_t i = 0; i <= t->mask; i++) {
            LaneSlot *s = &t->slots[i];
            if (s->name == NULL)
                continue;
            size_t j = name_hash(s->name, s->len) & (size - 1);
            while (slots[j].name != NULL)
                j = (j + 1) & (size - 1);
            slots[j] = *s;
        }
        PyMem_Free(t->slots);
        t->slots = slots;
        t->mask = size - 1;
    }
    size_t i = name_hash(key, len) & t->mask;
    while (t->slots[i].name != NULL &&
           !(t->slots[i].len == len && memcmp(t->slots[i].name, key, len) == 0))
        i = (i + 1) & t->mask;
    LaneSlot *slot = &t->slots[i];
    if (slot->name == NULL) { /* a new stream; a name added again takes its new lane */
        slot->name = PyMem_Malloc(len + 1);
        if (slot->name == NULL) {
            PyMem_Free(lane);
            return PyErr_NoMemory();
        }
        memcpy(slot->name, key, len + 1);
        slot->len = len;
    }
    lane->make = Py_NewRef(args[2]);
    lane->take = Py_NewRef(args[3]);
    lane->stats = Py_NewRef(args[4]);
    lane->symbol = Py_NewRef(args[5]);
    lane->interval = Py_NewRef(args[6]);
    lane->decode = Py_NewRef(args[7]);
    lane->convert = Py_NewRef(args[8]);
    slot->lane = (int32_t)t->n;
    t->lanes[t->n++] = lane; /* (a replaced lane stays, unused, until the table goes) */
    Py_RETURN_NONE;
}

static Py_ssize_t LaneTable_len(LaneTable *t) {
    Py_ssize_t n = 0;
    for (size_t i = 0; t->slots != NULL && i <= t->mask; i++)
        n += t->slots[i].name != NULL;
    return n;
}

static int LaneTable_traverse(LaneTable *t, visitproc visit, void *arg) {
    /* its takers are the feed's methods: a cycle if the feed keeps it */
    for (Py_ssize_t i = 0; i < t->n; i++) {
        Lane *lane = t->lanes[i];
        Py_VISIT(lane->make);
        Py_VISIT(lane->take);
        Py_VISIT(lane->stats);
        Py_VISIT(lane->decode);
        Py_VISIT(lane->convert);
    }
    Py_VISIT(t->refused);
    return 0;
}

/* every lane let go of (the table then finds no stream) */
static int LaneTable_clear(LaneTable *t) {
    for (size_t i = 0; t->slots != NULL && i <= t->mask; i++) {
        PyMem_Free(t->slots[i].name);
        t->slots[i].name = NULL;
    }
    Py_ssize_t n = t->n;
    t->n = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        lane_free(t->lanes[i]);
    Py_CLEAR(t->refused);
    return 0;
}

static void LaneTable_dealloc(LaneTable *t) {
    PyObject_GC_UnTrack(t);
    LaneTable_clear(t);
    PyMem_Free(t->slots);
    PyMem_Free(t->lanes);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyObject *LaneTable_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *refused;
    if (!PyArg_ParseTuple(args, "O:LaneTable", &refused))
        return NULL;
    LaneTable *t = (LaneTable *)type->tp_alloc(type, 0);
    if (t == NULL)
        return NULL;
    t->base.read = table_read;
    t->base.take = table_take;
    t->refused = Py_NewRef(refused);
    t->mask = 15;
    t->slots = PyMem_Calloc(t->mask + 1, sizeof(LaneSlot));
    if (t->slots == NULL) {
        Py_DECREF(t);
        return PyErr_NoMemory();
    }
    return (PyObject *)t;
}

static PyMethodDef LaneTable_methods[] = {
    {"add", (PyCFunction)(void (*)(void))LaneTable_add, METH_FASTCALL,
     "add(name, payload, make, take, stats, symbol, interval, decode, convert): a stream's lane"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods LaneTable_seq = {.sq_length = (lenfunc)LaneTable_len};

PyTypeObject LaneTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "marketlab._native.LaneTable",
    .tp_basicsize = sizeof(LaneTable),
    .tp_dealloc = (destructor)LaneTable_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)LaneTable_traverse,
    .tp_clear = (inquiry)LaneTable_clear,
    .tp_doc = "LaneTable(refused): a feed's lanes by stream name (add), read by take_combined "
              "and, without the GIL, by a recording's reader.",
    .tp_new = LaneTable_new,
    .tp_methods = LaneTable_methods,
    .tp_as_sequence = &LaneTable_seq,
};

int native_binance_init(PyObject *module) {
    classes_init();
    schema_init(&TRADE, TRADE_FIELDS);
    schema_init(&DEPTH, DEPTH_FIELDS);
    schema_init(&KLINE, KLINE_FIELDS);
    schema_init(&BODY, BODY_FIELDS);
    schema_init(&TICKER, TICKER_FIELDS);
    BUY = PyUnicode_InternFromString("buy");
    SELL = PyUnicode_InternFromString("sell");
    WS = PyUnicode_InternFromString("ws");
    if (BUY == NULL || SELL == NULL || WS == NULL || PyType_Ready(&LaneTableType) < 0 ||
        PyModule_AddObjectRef(module, "LaneTable", (PyObject *)&LaneTableType) < 0)
        return -1;
    /* PAYLOADS: {payload name: the names of its record's values, in `make`'s order} */
    return module_add(module, "PAYLOADS",
                      values_by_record(PAYLOAD_NAMES + K_TRADE, VALUES + K_TRADE, K_TICKER));
}
