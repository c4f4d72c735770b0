/* Binance combined frames, compiled: a frame {"stream":"NAME","data":PAYLOAD} of one of our
 * streams straight to its record and its taker, without the wire struct in between.
 *
 * take_combined(lanes, frame) -> bool
 *   lanes: a dict by stream NAME (bytes) of Lane tuples (binance/frames.py), whose `code` says
 *   which payload this reader knows: a trade, a diff-depth update, a kline, a 24h ticker (0: a
 *   payload it leaves to the lane's msgspec decoder). True when the record went to the lane's
 *   taker; False when the frame is anything else (an unknown stream, a control event, a payload
 *   that is malformed or merely unusual: escapes, a missing field, a number out of range) -
 *   the caller's careful decoder takes those and says what is wrong.
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

#include "_native.h"

/* Lane tuple fields (binance/frames.py's Lane) */
enum { L_CODE, L_RECORD, L_TAKE, L_STATS, L_SYMBOL, L_INTERVAL, L_DECODE, L_CONVERT };
enum { K_OTHER = 0, K_TRADE = 1, K_DEPTH = 2, K_KLINE = 3, K_TICKER = 4 };

static PyObject *BUY, *SELL, *WS, *DECODE_ERROR;

/* --- a JSON cursor over one payload -----------------------------------------------------
 * The payload lies inside its frame, a bytes object, which always ends in a NUL: the scans
 * below stop at it (or at the envelope's closing brace) without a bounds check per byte, and
 * each token is checked against the payload's end once it is read.
 */

typedef struct {
    const char *p, *end;
} Cur;

enum { C_WS = 1, C_DIGIT = 2, C_STOP = 4 }; /* C_STOP: ends a plain string (or refuses it) */
static unsigned char CLS[256];

static void classes_init(void) {
    for (int ch = 0; ch < 256; ch++)
        CLS[ch] = (ch < 0x20 || ch >= 0x80 || ch == '"' || ch == '\\') ? C_STOP : 0;
    CLS[' '] = CLS['\t'] = CLS['\n'] = CLS['\r'] = C_WS;
    CLS['\t'] |= C_STOP; /* controls may not stand in a string */
    CLS['\n'] |= C_STOP;
    CLS['\r'] |= C_STOP;
    for (int ch = '0'; ch <= '9'; ch++)
        CLS[ch] = C_DIGIT;
}

#define CLASS(p) CLS[(unsigned char)*(p)]

static inline void skip_ws(Cur *c) {
    while (CLASS(c->p) & C_WS)
        c->p++;
}

static inline int eat(Cur *c, char ch) {
    skip_ws(c);
    if (*c->p == ch && c->p < c->end) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A string without escapes: its bytes (0 when it has escapes, controls or non-ASCII bytes, left
 * to msgspec, or is not a string). */
static int plain_string(Cur *c, const char **s, Py_ssize_t *n) {
    skip_ws(c);
    const char *p = c->p;
    if (*p != '"' || p >= c->end)
        return 0;
    const char *start = ++p;
    while (!(CLASS(p) & C_STOP))
        p++;
    if (*p != '"' || p >= c->end)
        return 0;
    *s = start;
    *n = p - start;
    c->p = p + 1;
    return 1;
}

/* --- numbers ---------------------------------------------------------------------------- */

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A JSON number at the cursor (strictly its grammar) to the double msgspec reads from it: an
 * integer goes through an int (so "-0" is 0.0), anything else is correctly rounded (exactly
 * when it has at most 15 digits and a small exponent, else by Python's conversion). 0 if it
 * is no number or out of range. */
static int scan_number(Cur *c, double *out) {
    const char *p = c->p, *s = p;
    int neg = *p == '-', integral = 1, digits = 0, exp10 = 0;
    uint64_t mant = 0;
    p += neg;
    if (*p == '0') {
        p++;
    } else if (CLASS(p) & C_DIGIT) {
        for (; CLASS(p) & C_DIGIT; p++, digits++) {
            if (digits < 19)
                mant = mant * 10 + (uint64_t)(*p - '0');
            else
                exp10++;
        }
    } else {
        return 0;
    }
    if (*p == '.') {
        integral = 0;
        p++;
        if (!(CLASS(p) & C_DIGIT))
            return 0;
        for (; CLASS(p) & C_DIGIT; p++) {
            if (mant == 0 && *p == '0') { /* leading zeros of a fraction: no digits */
                exp10--;
            } else if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                exp10--;
                digits++;
            } else {
                digits++;
            }
        }
    }
    if (*p == 'e' || *p == 'E') {
        integral = 0;
        p++;
        int eneg = 0, e = 0;
        if (*p == '+' || *p == '-')
            eneg = *p++ == '-';
        if (!(CLASS(p) & C_DIGIT))
            return 0;
        for (; CLASS(p) & C_DIGIT; p++)
            if (e < 100000)
                e = e * 10 + (*p - '0');
        exp10 += eneg ? -e : e;
    }
    if (p > c->end)
        return 0;
    c->p = p;
    if (mant == 0) {
        *out = (neg && !integral) ? -0.0 : 0.0;
        return 1;
    }
    if (digits <= 15 && exp10 >= -22 && exp10 <= 22) { /* one rounding of exact values */
        double v = (double)mant;
        v = exp10 < 0 ? v / POW10[-exp10] : v * POW10[exp10];
        *out = neg ? -v : v;
        return 1;
    }
    char buf[128];
    Py_ssize_t n = p - s;
    if (n >= (Py_ssize_t)sizeof(buf))
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *stop;
    double v = PyOS_string_to_double(buf, &stop, NULL);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (stop != buf + n || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

/* A float field: a number, bare or in a string (msgspec reads both). */
static int read_float(Cur *c, double *out) {
    skip_ws(c);
    if (*c->p != '"')
        return scan_number(c, out);
    c->p++;
    if (!scan_number(c, out) || *c->p != '"' || c->p >= c->end)
        return 0;
    c->p++;
    return 1;
}

/* An int field: a JSON integer that fits an int64 (a string, a fraction or more: msgspec's). */
static int read_int(Cur *c, int64_t *out) {
    skip_ws(c);
    const char *p = c->p;
    int neg = *p == '-';
    p += neg;
    if (!(CLASS(p) & C_DIGIT) || (*p == '0' && (CLASS(p + 1) & C_DIGIT)))
        return 0;
    uint64_t v = 0;
    int digits = 0;
    for (; CLASS(p) & C_DIGIT; p++, digits++)
        v = v * 10 + (uint64_t)(*p - '0');
    /* 19 digits stay below 2^64; beyond int64's range: left to msgspec (a Python int) */
    if (digits > 19 || v > (uint64_t)INT64_MAX + (uint64_t)neg || *p == '.' || *p == 'e' ||
        *p == 'E' || p > c->end)
        return 0;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    c->p = p;
    return 1;
}

static int read_bool(Cur *c, int *out) {
    skip_ws(c);
    if (c->end - c->p >= 4 && memcmp(c->p, "true", 4) == 0) {
        c->p += 4;
        *out = 1;
        return 1;
    }
    if (c->end - c->p >= 5 && memcmp(c->p, "false", 5) == 0) {
        c->p += 5;
        *out = 0;
        return 1;
    }
    return 0;
}

/* Any JSON value, passed over (a field no record keeps); 0 for anything this reader would
 * not read itself (left to msgspec, which may well accept it). */
static int skip_value(Cur *c, int depth) {
    const char *s;
    Py_ssize_t n;
    double unused;
    skip_ws(c);
    if (c->p >= c->end || depth > 32)
        return 0;
    char ch = *c->p;
    if (ch == '"')
        return plain_string(c, &s, &n);
    if (ch == '{' || ch == '[') {
        char close = ch == '{' ? '}' : ']';
        c->p++;
        if (eat(c, close))
            return 1;
        do {
            if (ch == '{' && !(plain_string(c, &s, &n) && eat(c, ':')))
                return 0;
            if (!skip_value(c, depth + 1))
                return 0;
        } while (eat(c, ','));
        return eat(c, close);
    }
    static const char *const WORDS[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(WORDS[i]);
        if ((size_t)(c->end - c->p) >= len && memcmp(c->p, WORDS[i], len) == 0) {
            c->p += len;
            return 1;
        }
    }
    return scan_number(c, &unused);
}

/* --- payload schemas ------------------------------------------------------------------
 * Every field a record takes from a payload has a one-letter key; a table by that letter
 * gives its slot and type. Unknown keys are passed over (msgspec ignores them too); a known
 * key twice, or one missing, leaves the frame to msgspec.
 */

enum { T_NONE, T_INT, T_FLOAT, T_BOOL, T_STR, T_LEVELS, T_KLINE };

typedef struct {
    char key;
    char type;
} Field;

typedef struct {
    int n;
    signed char slot[128]; /* by key letter: the field's slot, or -1 */
    char type[32];
} Schema;

/* Slots, in the order of each wire struct in binance/frames.py */
static const Field TRADE_FIELDS[] = {{'E', T_INT}, {'s', T_STR},   {'t', T_INT}, {'p', T_FLOAT},
                                     {'q', T_FLOAT}, {'T', T_INT}, {'m', T_BOOL}, {0, 0}};
static const Field DEPTH_FIELDS[] = {{'E', T_INT},    {'s', T_STR},    {'U', T_INT},
                                     {'u', T_INT},    {'b', T_LEVELS}, {'a', T_LEVELS},
                                     {0, 0}};
static const Field KLINE_FIELDS[] = {{'E', T_INT}, {'s', T_STR}, {'k', T_KLINE}, {0, 0}};
static const Field BODY_FIELDS[] = {
    {'t', T_INT},   {'T', T_INT},   {'s', T_STR},   {'i', T_STR},   {'o', T_FLOAT},
    {'c', T_FLOAT}, {'h', T_FLOAT}, {'l', T_FLOAT}, {'v', T_FLOAT}, {'n', T_INT},
    {'x', T_BOOL},  {'q', T_FLOAT}, {'V', T_FLOAT}, {'Q', T_FLOAT}, {0, 0}};
static const Field TICKER_FIELDS[] = {
    {'E', T_INT},   {'s', T_STR},   {'p', T_FLOAT}, {'P', T_FLOAT}, {'w', T_FLOAT},
    {'x', T_FLOAT}, {'c', T_FLOAT}, {'Q', T_FLOAT}, {'b', T_FLOAT}, {'B', T_FLOAT},
    {'a', T_FLOAT}, {'A', T_FLOAT}, {'o', T_FLOAT}, {'h', T_FLOAT}, {'l', T_FLOAT},
    {'v', T_FLOAT}, {'q', T_FLOAT}, {'O', T_INT},   {'C', T_INT},   {'F', T_INT},
    {'L', T_INT},   {'n', T_INT},   {0, 0}};

static Schema TRADE, DEPTH, KLINE, BODY, TICKER;

static void schema_init(Schema *s, const Field *f) {
    memset(s->slot, -1, sizeof(s->slot));
    for (s->n = 0; f[s->n].key; s->n++) {
        s->slot[(int)f[s->n].key] = (signed char)s->n;
        s->type[s->n] = f[s->n].type;
    }
}

/* What a payload's fields were read to, by slot: numbers, and the objects made (owned) */
typedef struct {
    int64_t i[24];
    double f[24];
    PyObject *o[24]; /* a str, a list of levels; NULL until read */
} Values;

/* Strings equal to a lane's symbol or interval are that object (no new str per record). */
static PyObject *known_str(const char *s, Py_ssize_t n, PyObject *a, PyObject *b) {
    PyObject *cands[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        if (cands[i] == NULL || !PyUnicode_CheckExact(cands[i]))
            continue;
        Py_ssize_t len;
        const char *u = PyUnicode_AsUTF8AndSize(cands[i], &len);
        if (u == NULL) {
            PyErr_Clear();
            continue;
        }
        if (len == n && memcmp(u, s, n) == 0)
            return Py_NewRef(cands[i]);
    }
    PyObject *str = PyUnicode_DecodeUTF8(s, n, "strict");
    if (str == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear(); /* invalid UTF-8: left to msgspec, which names it */
    }
    return str;
}

/* [[price, qty], ...] as a list of (float, float) tuples; NULL without an error: not that. */
static PyObject *read_levels(Cur *c) {
    if (!eat(c, '['))
        return NULL;
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    if (eat(c, ']'))
        return list;
    do {
        double price, qty;
        if (!eat(c, '[') || !read_float(c, &price) || !eat(c, ',') || !read_float(c, &qty) ||
            !eat(c, ']'))
            goto not_levels;
        PyObject *level = PyTuple_New(2);
        PyObject *pp = level ? PyFloat_FromDouble(price) : NULL;
        PyObject *qq = pp ? PyFloat_FromDouble(qty) : NULL;
        if (qq == NULL) {
            Py_XDECREF(pp);
            Py_XDECREF(level);
            Py_DECREF(list);
            return NULL;
        }
        PyTuple_SET_ITEM(level, 0, pp);
        PyTuple_SET_ITEM(level, 1, qq);
        PyObject_GC_UnTrack(level); /* two floats: no cycle (what a collection would find) */
        int rc = PyList_Append(list, level);
        Py_DECREF(level);
        if (rc < 0) {
            Py_DECREF(list);
            return NULL;
        }
    } while (eat(c, ','));
    if (eat(c, ']'))
        return list;
not_levels:
    Py_DECREF(list);
    return NULL;
}

static void clear_values(Values *v) {
    for (int i = 0; i < 24; i++)
        Py_CLEAR(v->o[i]);
}

/* One JSON object of `schema` into `vals` (and a kline's body into `body`). 1: read; 0: not
 * for this reader (a Python error set only when it failed for want of memory). */
static int read_object(Cur *c, const Schema *schema, Values *v, Values *body, PyObject *sym,
                       PyObject *interval) {
    uint32_t seen = 0;
    if (!eat(c, '{'))
        return 0;
    if (eat(c, '}'))
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
        const char *s;
        Py_ssize_t n;
        switch (schema->type[slot]) {
        case T_INT:
            ok = read_int(c, &v->i[slot]);
            break;
        case T_FLOAT:
            ok = read_float(c, &v->f[slot]);
            break;
        case T_BOOL:
            ok = read_bool(c, &flag);
            v->i[slot] = flag;
            break;
        case T_STR:
            ok = plain_string(c, &s, &n) && (v->o[slot] = known_str(s, n, sym, interval)) != NULL;
            break;
        case T_LEVELS:
            ok = (v->o[slot] = read_levels(c)) != NULL;
            break;
        case T_KLINE:
            ok = body != NULL && read_object(c, &BODY, body, NULL, sym, interval);
            break;
        }
        if (!ok)
            return 0;
    } while (eat(c, ','));
    if (!eat(c, '}'))
        return 0;
    return seen == (1u << schema->n) - 1u; /* every field there */
}

/* --- records ---------------------------------------------------------------------------- */

#define INT(x) PyLong_FromLongLong(x)
#define FLT(x) PyFloat_FromDouble(x)

/* `n` new references (NULL where one failed) to `type(*args)`; the references are dropped. */
static PyObject *build(PyObject *type, PyObject **args, Py_ssize_t n) {
    PyObject *rec = NULL;
    Py_ssize_t i;
    for (i = 0; i < n; i++)
        if (args[i] == NULL)
            break;
    if (i == n)
        rec = PyObject_Vectorcall(type, args, n, NULL);
    for (i = 0; i < n; i++)
        Py_XDECREF(args[i]);
    return rec;
}

static PyObject *steal(PyObject **o) {
    PyObject *taken = *o;
    *o = NULL;
    return taken;
}

/* The record of a payload of kind `code`; NULL without an error: not for this reader. */
static PyObject *record_of(int code, PyObject *type, const char *s, Py_ssize_t n, PyObject *sym,
                           PyObject *interval) {
    Values v, k;
    memset(v.o, 0, sizeof(v.o));
    memset(k.o, 0, sizeof(k.o));
    Cur c = {s, s + n};
    PyObject *rec = NULL;
    const Schema *schema = code == K_TRADE   ? &TRADE
                           : code == K_DEPTH ? &DEPTH
                           : code == K_KLINE ? &KLINE
                                             : &TICKER;
    if (!read_object(&c, schema, &v, code == K_KLINE ? &k : NULL, sym, interval))
        goto done;
    skip_ws(&c);
    if (c.p != c.end)
        goto done;
    const int64_t *vi = v.i, *ki = k.i;
    const double *vf = v.f, *kf = k.f;
    if (code == K_TRADE) { /* Trade(s, t, p, q, side, T, E) */
        PyObject *a[] = {steal(&v.o[1]), INT(vi[2]), FLT(vf[3]), FLT(vf[4]),
                         Py_NewRef(vi[6] ? SELL : BUY), INT(vi[5]), INT(vi[0])};
        rec = build(type, a, 7);
    } else if (code == K_DEPTH) { /* BookDelta(s, U, u, b, a, E) */
        PyObject *a[] = {steal(&v.o[1]), INT(vi[2]), INT(vi[3]), steal(&v.o[4]),
                         steal(&v.o[5]), INT(vi[0])};
        rec = build(type, a, 6);
    } else if (code == K_KLINE) { /* Kline(k.s, k.i, k.t, o, h, l, c, v, k.T, q, n, V, Q, x, E) */
        PyObject *a[] = {steal(&k.o[2]), steal(&k.o[3]), INT(ki[0]), FLT(kf[4]), FLT(kf[6]),
                         FLT(kf[7]), FLT(kf[5]), FLT(kf[8]), INT(ki[1]), FLT(kf[11]),
                         INT(ki[9]), FLT(kf[12]), FLT(kf[13]), PyBool_FromLong((long)ki[10]),
                         INT(vi[0])};
        rec = build(type, a, 15);
    } else { /* Ticker(s, E, c, Q, b, B, a, A, o, h, l, v, q, p, P, w, x, O, C, F, L, n) */
        PyObject *a[] = {steal(&v.o[1]), INT(vi[0]),  FLT(vf[6]),  FLT(vf[7]),  FLT(vf[8]),
                         FLT(vf[9]),     FLT(vf[10]), FLT(vf[11]), FLT(vf[12]), FLT(vf[13]),
                         FLT(vf[14]),    FLT(vf[15]), FLT(vf[16]), FLT(vf[2]),  FLT(vf[3]),
                         FLT(vf[4]),     FLT(vf[5]),  INT(vi[17]), INT(vi[18]), INT(vi[19]),
                         INT(vi[20]),    INT(vi[21])};
        rec = build(type, a, 22);
    }
done:
    clear_values(&v);
    clear_values(&k);
    return rec;
}

/* --- the frame ------------------------------------------------------------------------- */

static const char COMBINED[] = "{\"stream\":\"";
static const char DATA[] = "\",\"data\":";

/* The lane and payload span of a combined frame of a stream in `lanes` (a borrowed lane);
 * NULL without an error when it is not one. */
static PyObject *lane_of(PyObject *frame, PyObject *lanes, const char **payload, Py_ssize_t *n) {
    if (!PyBytes_CheckExact(frame))
        return NULL;
    const char *f = PyBytes_AS_STRING(frame);
    Py_ssize_t size = PyBytes_GET_SIZE(frame);
    const Py_ssize_t head = sizeof(COMBINED) - 1, sep = sizeof(DATA) - 1;
    if (size < head + sep + 1 || memcmp(f, COMBINED, head) != 0 || f[size - 1] != '}')
        return NULL;
    Py_ssize_t end = -1;
    for (Py_ssize_t i = head; i + sep <= size - 1; i++) {
        if (f[i] == '"') {
            if (memcmp(f + i, DATA, sep) == 0)
                end = i;
            break; /* a stream name holds no quote: the first one ends it */
        }
    }
    if (end < 0)
        return NULL;
    PyObject *name = PyBytes_FromStringAndSize(f + head, end - head);
    if (name == NULL)
        return NULL;
    PyObject *lane = PyDict_GetItemWithError(lanes, name);
    Py_DECREF(name);
    *payload = f + end + sep;
    *n = size - 1 - (end + sep);
    return lane;
}

/* route_combined(frame, lanes) -> (lane, payload) or None: the cut alone (twin: binance/frames.py
 * route_combined_python), for callers that decode the payload themselves. */
PyObject *route_combined(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "route_combined(frame, lanes: dict)");
        return NULL;
    }
    const char *payload;
    Py_ssize_t n;
    PyObject *lane = lane_of(args[0], args[1], &payload, &n);
    if (lane == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *data = PyBytes_FromStringAndSize(payload, n);
    if (data == NULL)
        return NULL;
    return Py_BuildValue("(ON)", lane, data);
}

static PyObject *take(PyObject *lane, PyObject *record) {
    PyObject *a[] = {PyTuple_GET_ITEM(lane, L_STATS), record, WS};
    PyObject *r = PyObject_Vectorcall(PyTuple_GET_ITEM(lane, L_TAKE), a, 3, NULL);
    Py_DECREF(record);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_TRUE;
}

/* A lane's own decoder and converter (a payload this reader does not know). */
static PyObject *take_decoded(PyObject *lane, const char *payload, Py_ssize_t n) {
    PyObject *data = PyBytes_FromStringAndSize(payload, n);
    if (data == NULL)
        return NULL;
    PyObject *wire = PyObject_CallOneArg(PyTuple_GET_ITEM(lane, L_DECODE), data);
    Py_DECREF(data);
    if (wire == NULL) {
        if (PyErr_ExceptionMatches(DECODE_ERROR)) {
            PyErr_Clear();
            Py_RETURN_FALSE;
        }
        return NULL;
    }
    PyObject *record = PyObject_CallOneArg(PyTuple_GET_ITEM(lane, L_CONVERT), wire);
    Py_DECREF(wire);
    return record == NULL ? NULL : take(lane, record);
}

PyObject *take_combined(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "take_combined(lanes: dict, frame)");
        return NULL;
    }
    const char *payload;
    Py_ssize_t n;
    PyObject *lane = lane_of(args[1], args[0], &payload, &n);
    if (lane == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_FALSE;
    }
    if (!PyTuple_Check(lane) || PyTuple_GET_SIZE(lane) <= L_CONVERT) {
        PyErr_SetString(PyExc_TypeError, "a lane must be a Lane tuple");
        return NULL;
    }
    long code = PyLong_AsLong(PyTuple_GET_ITEM(lane, L_CODE));
    if (code == -1 && PyErr_Occurred())
        return NULL;
    if (code < K_TRADE || code > K_TICKER)
        return take_decoded(lane, payload, n);
    Py_INCREF(lane); /* the taker may change the dict it came from */
    PyObject *record = record_of((int)code, PyTuple_GET_ITEM(lane, L_RECORD), payload, n,
                                 PyTuple_GET_ITEM(lane, L_SYMBOL),
                                 PyTuple_GET_ITEM(lane, L_INTERVAL));
    PyObject *r;
    if (record != NULL)
        r = take(lane, record);
    else if (PyErr_Occurred())
        r = NULL;
    else
        r = Py_NewRef(Py_False);
    Py_DECREF(lane);
    return r;
}

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
    if (BUY == NULL || SELL == NULL || WS == NULL)
        return -1;
    PyObject *msgspec = PyImport_ImportModule("msgspec");
    if (msgspec == NULL)
        return -1;
    DECODE_ERROR = PyObject_GetAttrString(msgspec, "DecodeError");
    Py_DECREF(msgspec);
    return DECODE_ERROR == NULL ? -1 : 0;
}
