/* OKX v5 pushes, compiled: a frame {"arg":{"channel":…,"instId":…},"data":[…]} of the hot
 * channels (trades-all and trades, tickers, books, bbo-tbt, candle<bar>) straight to the
 * records okx/frames.py's OkxDecoder makes of it, without msgspec's structs in between.
 *
 * OkxFrameReader(makers, bars): a type that owns what it reads by: `makers` maps each kind of
 *   record this reader makes (a key of OKX_VALUES) to what makes one, `make(*values)`, the
 *   values in the order OKX_VALUES names them (the Python side checks its record class against
 *   them and hands an adapter where they differ); `bars` maps a candle bar ("1m", "1H",
 *   "6Hutc") to (interval, step_ms, phase_ms): its candles open at phase + k * step.
 * read(frame) -> list of records, or None
 *   None for anything else or anything unusual: another channel, an event, a pong, escapes in
 *   a string, a field missing or twice, a number out of its rule, malformed JSON, no record at
 *   all. The caller's OkxDecoder then reads the frame (and says what is wrong with it). Bad
 *   input never raises here; only a failing `make` (or memory running out) does.
 * Numbers are read to the double msgspec reads (json_cursor.h); a bbo-tbt level's to the one
 * Python's float() reads, as the decoder reads those; every number keeps the rule of
 * marketlab/numbers.py that the decoder's wire structs are typed with.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "native.h"
#include "json_cursor.h"
#include "records.h"

/* The records this reader makes, and the names of each one's values in `make`'s order */
enum { R_TRADE, R_TICKER, R_KLINE, R_BOOK_TICKER, R_BOOK, R_KINDS };
static const char *const KIND_NAMES[] = {"trade", "ticker", "kline", "book_ticker", "book"};

static const char *const TRADE_VALUES[] = {TRADE_VALUE_NAMES, NULL};
static const char *const TICKER_VALUES[] = {TICKER_VALUE_NAMES, NULL};
static const char *const KLINE_VALUES[] = {KLINE_VALUE_NAMES, NULL};
static const char *const BOOK_TICKER_VALUES[] = {"symbol", "update_id", "bid",
                                                 "bid_qty", "ask",      "ask_qty", NULL};
static const char *const BOOK_VALUES[] = {"symbol", "action",      "bids",        "asks",
                                          "seq_id", "prev_seq_id", "checksum",    "time",
                                          "bid_changes", "ask_changes", NULL};
static const char *const *const VALUES[] = {TRADE_VALUES, TICKER_VALUES, KLINE_VALUES,
                                            BOOK_TICKER_VALUES, BOOK_VALUES};

static PyObject *BUY, *SELL, *SNAPSHOT, *UPDATE;

#define TIME_MIN_MS 1262304000000LL /* 2010-01-01, marketlab.numbers.TIME_MIN_MS */
#define TIME_MAX_MS 4102444800000LL /* 2100-01-01, marketlab.numbers.TIME_MAX_MS */
#define DAY_MS 86400000LL

/* --- the pieces of a push ---------------------------------------------------------------- */

typedef struct {
    const char *s;
    Py_ssize_t n;
} Text;

static inline int text_is(Text t, const char *want) {
    size_t n = strlen(want);
    return (size_t)t.n == n && memcmp(t.s, want, n) == 0;
}

/* A str of a plain string's bytes (ASCII: plain_string refuses the rest). */
static PyObject *str_of(const char *s, Py_ssize_t n) {
    PyObject *u = PyUnicode_New(n, 127);
    if (u != NULL)
        memcpy(PyUnicode_1BYTE_DATA(u), s, (size_t)n);
    return u;
}

/* OKX's instrument to our symbol: BTC-USDT -> BTCUSDT (protocol.symbol_of). */
static PyObject *symbol_of(Text inst) {
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < inst.n; i++)
        n += inst.s[i] != '-';
    PyObject *u = PyUnicode_New(n, 127);
    if (u == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(u);
    for (Py_ssize_t i = 0; i < inst.n; i++)
        if (inst.s[i] != '-')
            *out++ = (Py_UCS1)inst.s[i];
    return u;
}

/* --- numbers as the decoder reads them ---------------------------------------------------- */

/* An int in a lax field (msgspec's strict=False): a JSON integer, bare or alone in a string. */
static int read_lax_int(Cur *c, int64_t *out) {
    skip_ws(c);
    if (BYTE(c, c->p) != '"')
        return read_int(c, out);
    c->p++;
    if (!read_int(c, out) || BYTE(c, c->p) != '"')
        return 0;
    c->p++;
    return 1;
}

/* The whole of a plain string's text as a JSON number; `as_text`: to the double Python's
 * float() reads of it (marketlab.numbers.price and amount: "-0" is -0.0), else to msgspec's
 * (a JSON integer goes through an int: "-0" is 0.0). */
static int number_text(const char *s, Py_ssize_t n, int as_text, double *out) {
    Cur c = {s, s + n, 1};
    if (!scan_number(&c, out) || c.p != c.end)
        return 0;
    if (as_text && *out == 0.0 && s[0] == '-')
        *out = -0.0;
    return 1;
}

/* --- a row of a push ----------------------------------------------------------------------
 * Each row's fields by name; a field's place in its table is its slot. Unknown names are
 * passed over (msgspec ignores them too); a known one twice, or a required one missing, leaves
 * the frame to the decoder.
 */

enum {
    T_INST,     /* a string that must be the push's instId */
    T_ID,       /* Id: an int64 >= 0 */
    T_ID_OR,    /* IdOrNone: an int64 >= -1 */
    T_TIME,     /* TimeMs: within TIME_MIN_MS..TIME_MAX_MS */
    T_PRICE,    /* Price: finite, > 0 */
    T_AMOUNT,   /* Amount: finite, >= 0 */
    T_SIDE,     /* "buy" or "sell" */
    T_LEVELS,   /* [[px, sz, ...], ...]: lists of strings */
    T_CHECKSUM, /* int or null */
};

typedef struct {
    const char *name;
    Py_ssize_t len;
    char type;
} Field;
#define FIELD(name, type) {name, sizeof(name) - 1, type}

/* A row's fields, and those it must have (by slot) */
typedef struct {
    const Field *fields;
    int n;
    uint32_t required;
} Schema;

#define MAX_FIELDS 16
static const Field TRADE_FIELDS[] = {
    FIELD("instId", T_INST), FIELD("tradeId", T_ID), FIELD("px", T_PRICE),
    FIELD("sz", T_AMOUNT),   FIELD("side", T_SIDE),  FIELD("ts", T_TIME)};
static const Field TICKER_FIELDS[] = {
    FIELD("instId", T_INST),    FIELD("last", T_AMOUNT),      FIELD("lastSz", T_AMOUNT),
    FIELD("askPx", T_AMOUNT),   FIELD("askSz", T_AMOUNT),     FIELD("bidPx", T_AMOUNT),
    FIELD("bidSz", T_AMOUNT),   FIELD("open24h", T_AMOUNT),   FIELD("high24h", T_AMOUNT),
    FIELD("low24h", T_AMOUNT),  FIELD("vol24h", T_AMOUNT),    FIELD("volCcy24h", T_AMOUNT),
    FIELD("ts", T_TIME)};
/* books and bbo-tbt; asks and bids are slots 0 and 1 (a side's index in Row) */
static const Field BOOK_FIELDS[] = {FIELD("asks", T_LEVELS),     FIELD("bids", T_LEVELS),
                                    FIELD("ts", T_TIME),         FIELD("seqId", T_ID_OR),
                                    FIELD("prevSeqId", T_ID_OR), FIELD("checksum", T_CHECKSUM)};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))
static const Schema TRADE_ROW = {TRADE_FIELDS, COUNT(TRADE_FIELDS), (1u << 6) - 1};
static const Schema TICKER_ROW = {TICKER_FIELDS, COUNT(TICKER_FIELDS), (1u << 13) - 1};
/* asks, bids, ts; the others have defaults */
static const Schema BOOK_ROW = {BOOK_FIELDS, COUNT(BOOK_FIELDS), 0x7u};
enum { ASKS, BIDS, TS, SEQ_ID, PREV_SEQ_ID, CHECKSUM };

/* How a row's levels are read: a book's every level (its strings kept, its numbers read by
 * msgspec's rules), a bbo-tbt's first level only (by the rules of numbers.price/amount). */
enum { L_BOOK, L_TOP };

typedef struct {
    int64_t i[MAX_FIELDS];
    double f[MAX_FIELDS];
    Text text[MAX_FIELDS];
    uint32_t seen;
    int checksum_null;
    PyObject *strs[2], *nums[2]; /* L_BOOK: each side's (px, sz) strings and numbers */
    int tops[2];                 /* L_TOP: each side's count of levels */
    double top[2][2];            /*        and its first level's price and size */
} Row;

static void row_clear(Row *r) {
    for (int k = 0; k < 2; k++) {
        Py_CLEAR(r->strs[k]);
        Py_CLEAR(r->nums[k]);
    }
}

/* One side's levels into row `r` (side `k`): 1 read, 0 not for this reader, -1 a Python
 * error. Every level is a list of plain strings (BookWire's list[list[str]]). */
static int read_levels(Cur *c, int mode, Row *r, int k) {
    if (!eat(c, '['))
        return 0;
    if (mode == L_BOOK) {
        r->strs[k] = PyList_New(0);
        r->nums[k] = PyList_New(0);
        if (r->strs[k] == NULL || r->nums[k] == NULL)
            return -1;
    }
    int count = 0;
    if (!eat(c, ']')) {
        do {
            Text px = {NULL, 0}, sz = {NULL, 0};
            int fields = 0;
            if (!eat(c, '['))
                return 0;
            if (!eat(c, ']')) {
                do {
                    Text s;
                    if (!plain_string(c, &s.s, &s.n))
                        return 0;
                    if (fields == 0)
                        px = s;
                    else if (fields == 1)
                        sz = s;
                    fields++;
                } while (eat(c, ','));
                if (!eat(c, ']'))
                    return 0;
            }
            if (mode == L_BOOK || count == 0) {
                double p, q;
                if (fields < 2 || !number_text(px.s, px.n, mode == L_TOP, &p) ||
                    !number_text(sz.s, sz.n, mode == L_TOP, &q) || !(p > 0.0) || !(q >= 0.0))
                    return 0;
                if (mode == L_TOP) {
                    r->top[k][0] = p;
                    r->top[k][1] = q;
                } else if (append_new(r->strs[k], pair_of(str_of(px.s, px.n),
                                                           str_of(sz.s, sz.n))) < 0 ||
                           append_new(r->nums[k], level_of(p, q)) < 0) {
                    return -1;
                }
            }
            count++;
        } while (eat(c, ','));
        if (!eat(c, ']'))
            return 0;
    }
    r->tops[k] = count;
    return 1;
}

/* The slot of field `key` in `schema`, or -1; looked for from slot `from` on (round to it
 * again), as a row's fields mostly come in the same order. */
static inline int slot_of(const Schema *schema, Text key, int from) {
    for (int k = 0; k < schema->n; k++) {
        int i = (from + k) % schema->n;
        const Field *f = &schema->fields[i];
        if (f->len == key.n && memcmp(f->name, key.s, (size_t)key.n) == 0)
            return i;
    }
    return -1;
}

/* One row object of `schema` into `r`: 1 when every required field was there and within its
 * rule, 0 when it is not for this reader, -1 on a Python error (the caller clears `r`). */
static int read_row(Cur *c, const Schema *schema, Text inst, int mode, Row *r) {
    const Field *fields = schema->fields;
    int next = 0; /* where the next field is looked for first */
    memset(r, 0, sizeof(*r));
    if (!eat(c, '{'))
        return 0;
    if (!eat(c, '}')) {
        do {
            Text key;
            if (!plain_string(c, &key.s, &key.n) || !eat(c, ':'))
                return 0;
            int slot = slot_of(schema, key, next);
            if (slot < 0) {
                if (!skip_value(c, 0))
                    return 0;
                continue;
            }
            if (r->seen & (1u << slot))
                return 0;
            r->seen |= 1u << slot;
            next = slot + 1;
            int ok = 0;
            int64_t i = 0;
            double f = 0.0;
            Text s = {NULL, 0};
            switch (fields[slot].type) {
            case T_ID:
            case T_ID_OR:
            case T_TIME:
                ok = read_lax_int(c, &i);
                ok = ok && (fields[slot].type == T_ID      ? i >= 0
                            : fields[slot].type == T_ID_OR ? i >= -1
                                                           : i >= TIME_MIN_MS && i <= TIME_MAX_MS);
                r->i[slot] = i;
                break;
            case T_PRICE:
            case T_AMOUNT: /* read_float gives finite numbers only */
                ok = read_float(c, &f) && (fields[slot].type == T_PRICE ? f > 0.0 : f >= 0.0);
                r->f[slot] = f;
                break;
            case T_INST:
                ok = plain_string(c, &s.s, &s.n) && s.n == inst.n &&
                     memcmp(s.s, inst.s, (size_t)s.n) == 0;
                break;
            case T_SIDE:
                ok = plain_string(c, &s.s, &s.n) && (text_is(s, "buy") || text_is(s, "sell"));
                r->text[slot] = s;
                break;
            case T_LEVELS: {
                int rc = read_levels(c, mode, r, slot);
                if (rc < 0)
                    return -1;
                ok = rc;
                break;
            }
            case T_CHECKSUM:
                skip_ws(c);
                if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) {
                    c->p += 4;
                    r->checksum_null = ok = 1;
                } else {
                    ok = read_int(c, &i);
                    r->i[slot] = i;
                }
                break;
            }
            if (!ok)
                return 0;
        } while (eat(c, ','));
        if (!eat(c, '}'))
            return 0;
    }
    return (r->seen & schema->required) == schema->required;
}

/* --- records ------------------------------------------------------------------------------ */

/* A candle bar of the table: its interval, and its candles' step and phase in ms. */
typedef struct {
    char *bar; /* NULL: no such slot */
    Py_ssize_t len;
    PyObject *interval;
    int64_t step, phase;
} Bar;

typedef struct {
    PyObject_HEAD
    PyObject *make[R_KINDS];
    Bar *bars;
    Py_ssize_t nbars;
} OkxFrameReader;

static const Bar *bar_of(const OkxFrameReader *r, Text bar) {
    for (Py_ssize_t i = 0; i < r->nbars; i++)
        if (r->bars[i].len == bar.n && memcmp(r->bars[i].bar, bar.s, (size_t)bar.n) == 0)
            return &r->bars[i];
    return NULL;
}

/* The push's data rows as records appended to `out`: 1, 0 (not for this reader) or -1. */
static int read_rows(const OkxFrameReader *self, Cur *c, int kind, const Bar *bar, Text inst,
                     PyObject *action, PyObject *symbol, PyObject *out) {
    if (!eat(c, '[') || eat(c, ']'))
        return 0; /* no rows: nothing to make */
    do {
        PyObject *record = NULL;
        if (kind == R_KLINE) { /* [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm] */
            int64_t ts, confirm;
            double v[7];
            if (!eat(c, '[') || !read_lax_int(c, &ts) || ts < TIME_MIN_MS || ts > TIME_MAX_MS)
                return 0;
            for (int k = 0; k < 7; k++)
                if (!eat(c, ',') || !read_float(c, &v[k]) || !(v[k] >= 0.0))
                    return 0;
            if (!eat(c, ',') || !read_lax_int(c, &confirm) || !eat(c, ']'))
                return 0;
            int64_t open = (ts - bar->phase) / bar->step * bar->step + bar->phase;
            PyObject *a[] = {Py_NewRef(symbol), Py_NewRef(bar->interval), INT(ts), FLT(v[0]),
                             FLT(v[1]), FLT(v[2]), FLT(v[3]), FLT(v[4]),
                             INT(open + bar->step - 1), FLT(v[6]), INT(-1), FLT(Py_NAN),
                             FLT(Py_NAN), PyBool_FromLong(confirm == 1), Py_NewRef(Py_None)};
            record = build(self->make[R_KLINE], a, 15);
        } else {
            Row r;
            const Schema *schema = kind == R_TRADE    ? &TRADE_ROW
                                   : kind == R_TICKER ? &TICKER_ROW
                                                      : &BOOK_ROW;
            int rc = read_row(c, schema, inst, kind == R_BOOK_TICKER ? L_TOP : L_BOOK, &r);
            if (rc <= 0) {
                row_clear(&r);
                return rc;
            }
            const int64_t *i = r.i;
            const double *f = r.f;
            if (kind == R_TRADE) { /* instId, tradeId, px, sz, side, ts */
                PyObject *a[] = {Py_NewRef(symbol), INT(i[1]), FLT(f[2]), FLT(f[3]),
                                 Py_NewRef(text_is(r.text[4], "buy") ? BUY : SELL), INT(i[5]),
                                 INT(i[5])};
                record = build(self->make[R_TRADE], a, 7);
            } else if (kind == R_TICKER) {
                /* instId, last, lastSz, askPx, askSz, bidPx, bidSz, open24h, high24h,
                   low24h, vol24h, volCcy24h, ts: as frames.ticker_of reckons */
                double change = f[1] - f[7];
                double pct = f[7] != 0.0 ? 100.0 * change / f[7] : 0.0;
                double wavg = f[10] != 0.0 ? f[11] / f[10] : Py_NAN;
                PyObject *a[] = {Py_NewRef(symbol), INT(i[12]), FLT(f[1]),  FLT(f[2]),
                                 FLT(f[5]),         FLT(f[6]),  FLT(f[3]),  FLT(f[4]),
                                 FLT(f[7]),         FLT(f[8]),  FLT(f[9]),  FLT(f[10]),
                                 FLT(f[11]),        FLT(change), FLT(pct),  FLT(wavg),
                                 FLT(Py_NAN),       INT(i[12] - DAY_MS),    INT(i[12]),
                                 INT(-1),           INT(-1),    INT(-1)};
                record = build(self->make[R_TICKER], a, 22);
            } else {
                int64_t seq = r.seen & (1u << SEQ_ID) ? i[SEQ_ID] : -1;
                int64_t prev = r.seen & (1u << PREV_SEQ_ID) ? i[PREV_SEQ_ID] : -1;
                if (kind == R_BOOK_TICKER) { /* a row with an empty side makes none */
                    if (r.tops[BIDS] && r.tops[ASKS]) {
                        PyObject *a[] = {Py_NewRef(symbol),      INT(seq),
                                         FLT(r.top[BIDS][0]),    FLT(r.top[BIDS][1]),
                                         FLT(r.top[ASKS][0]),    FLT(r.top[ASKS][1])};
                        record = build(self->make[R_BOOK_TICKER], a, 6);
                        if (append_new(out, record) < 0)
                            return -1;
                    }
                    continue;
                }
                PyObject *checksum = !(r.seen & (1u << CHECKSUM)) || r.checksum_null
                                         ? Py_NewRef(Py_None)
                                         : INT(i[CHECKSUM]);
                PyObject *a[] = {Py_NewRef(symbol), Py_NewRef(action),
                                 r.strs[BIDS],      r.strs[ASKS],
                                 INT(seq),          INT(prev),
                                 checksum,          INT(i[TS]),
                                 r.nums[BIDS],      r.nums[ASKS]};
                r.strs[BIDS] = r.strs[ASKS] = r.nums[BIDS] = r.nums[ASKS] = NULL; /* given */
                record = build(self->make[R_BOOK], a, 10);
            }
        }
        if (append_new(out, record) < 0)
            return -1;
    } while (eat(c, ','));
    return eat(c, ']');
}

/* The push's envelope: its arg's channel and instId, its action, its data's span. 0 for
 * anything but a plain push (an event, an error, a notice: the decoder's). */
typedef struct {
    Text channel, inst, action;
    const char *data, *data_end;
    int has_arg, has_action;
} Push;

static int read_arg(Cur *c, Push *p) {
    int has_channel = 0, has_inst = 0;
    if (!eat(c, '{') || eat(c, '}'))
        return 0;
    do {
        Text key;
        if (!plain_string(c, &key.s, &key.n) || !eat(c, ':'))
            return 0;
        int *seen = text_is(key, "channel") ? &has_channel
                    : text_is(key, "instId") ? &has_inst
                                             : NULL;
        if (seen == NULL) {
            if (!skip_value(c, 0))
                return 0;
            continue;
        }
        Text *value = seen == &has_channel ? &p->channel : &p->inst;
        if (*seen || !plain_string(c, &value->s, &value->n))
            return 0;
        *seen = 1;
    } while (eat(c, ','));
    return eat(c, '}') && has_channel && has_inst;
}

static int read_push(Cur *c, Push *p) {
    memset(p, 0, sizeof(*p));
    if (!eat(c, '{') || eat(c, '}'))
        return 0;
    do {
        Text key;
        if (!plain_string(c, &key.s, &key.n) || !eat(c, ':'))
            return 0;
        if (text_is(key, "arg")) {
            if (p->has_arg || !read_arg(c, p))
                return 0;
            p->has_arg = 1;
        } else if (text_is(key, "data")) {
            skip_ws(c);
            if (p->data != NULL || BYTE(c, c->p) != '[')
                return 0;
            p->data = c->p;
            if (!skip_value(c, 0))
                return 0;
            p->data_end = c->p;
        } else if (text_is(key, "action")) {
            if (p->has_action || !plain_string(c, &p->action.s, &p->action.n))
                return 0;
            p->has_action = 1;
        } else if (text_is(key, "event") || text_is(key, "code") || text_is(key, "msg")) {
            return 0; /* a control message, or a push the decoder has more to say of */
        } else if (!skip_value(c, 0)) {
            return 0;
        }
    } while (eat(c, ','));
    if (!eat(c, '}'))
        return 0;
    skip_ws(c);
    return c->p == c->end && p->has_arg && p->data != NULL;
}

static PyObject *OkxFrameReader_read(OkxFrameReader *self, PyObject *frame) {
    if (!PyBytes_CheckExact(frame))
        Py_RETURN_NONE;
    const char *base = PyBytes_AS_STRING(frame);
    Cur c = {base, base + PyBytes_GET_SIZE(frame), 1};
    Push p;
    if (!read_push(&c, &p))
        Py_RETURN_NONE;
    int kind;
    const Bar *bar = NULL;
    PyObject *action = NULL;
    Text ch = p.channel;
    if (text_is(ch, "trades-all") || text_is(ch, "trades")) {
        kind = R_TRADE;
    } else if (text_is(ch, "tickers")) {
        kind = R_TICKER;
    } else if (text_is(ch, "bbo-tbt")) {
        kind = R_BOOK_TICKER;
    } else if (text_is(ch, "books")) {
        kind = R_BOOK;
        action = !p.has_action                   ? NULL
                 : text_is(p.action, "snapshot") ? SNAPSHOT
                 : text_is(p.action, "update")   ? UPDATE
                                                 : NULL;
        if (action == NULL)
            Py_RETURN_NONE;
    } else if (ch.n > 6 && memcmp(ch.s, "candle", 6) == 0) {
        kind = R_KLINE;
        bar = bar_of(self, (Text){ch.s + 6, ch.n - 6});
        if (bar == NULL)
            Py_RETURN_NONE;
    } else {
        Py_RETURN_NONE;
    }
    PyObject *symbol = symbol_of(p.inst);
    PyObject *out = symbol ? PyList_New(0) : NULL;
    if (out == NULL) {
        Py_XDECREF(symbol);
        return NULL;
    }
    Cur data = {p.data, p.data_end, 1};
    Py_INCREF(self); /* a `make` may let go of the reader */
    int rc = read_rows(self, &data, kind, bar, p.inst, action, symbol, out);
    Py_DECREF(self);
    Py_DECREF(symbol);
    if (rc > 0 && PyList_GET_SIZE(out) > 0)
        return out;
    Py_DECREF(out);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* --- the type ------------------------------------------------------------------------------ */

static void bars_free(OkxFrameReader *self) {
    for (Py_ssize_t i = 0; self->bars != NULL && i < self->nbars; i++) {
        PyMem_Free(self->bars[i].bar);
        Py_XDECREF(self->bars[i].interval);
    }
    PyMem_Free(self->bars);
    self->bars = NULL;
    self->nbars = 0;
}

static int OkxFrameReader_traverse(OkxFrameReader *self, visitproc visit, void *arg) {
    for (int k = 0; k < R_KINDS; k++)
        Py_VISIT(self->make[k]);
    return 0;
}

static int OkxFrameReader_clear(OkxFrameReader *self) {
    for (int k = 0; k < R_KINDS; k++)
        Py_CLEAR(self->make[k]);
    return 0;
}

static void OkxFrameReader_dealloc(OkxFrameReader *self) {
    PyObject_GC_UnTrack(self);
    OkxFrameReader_clear(self);
    bars_free(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* bars: {bar: (interval, step_ms, phase_ms)}, each step > 0 and 0 <= phase < step */
static int bars_init(OkxFrameReader *self, PyObject *bars) {
    Py_ssize_t n = PyDict_Size(bars), pos = 0, i = 0;
    PyObject *key, *value;
    self->bars = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Bar));
    if (self->bars == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    while (PyDict_Next(bars, &pos, &key, &value)) {
        PyObject *interval;
        long long step, phase;
        Py_ssize_t len;
        const char *name = PyUnicode_Check(key) ? PyUnicode_AsUTF8AndSize(key, &len) : NULL;
        if (name == NULL || !PyTuple_Check(value) ||
            !PyArg_ParseTuple(value, "ULL", &interval, &step, &phase) || step <= 0 ||
            phase < 0 || phase >= step) {
            if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_ValueError, "bars: {bar: (interval, step_ms, phase_ms)} "
                                                  "with 0 <= phase_ms < step_ms");
            }
            return -1;
        }
        Bar *b = &self->bars[i];
        b->bar = PyMem_Malloc((size_t)len + 1);
        if (b->bar == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(b->bar, name, (size_t)len + 1);
        b->len = len;
        b->interval = Py_NewRef(interval);
        b->step = step;
        b->phase = phase;
        self->nbars = ++i;
    }
    return 0;
}

static PyObject *OkxFrameReader_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *makers, *bars;
    if (!PyArg_ParseTuple(args, "O!O!:OkxFrameReader", &PyDict_Type, &makers, &PyDict_Type,
                          &bars))
        return NULL;
    OkxFrameReader *self = (OkxFrameReader *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    for (int k = 0; k < R_KINDS; k++) {
        PyObject *make = PyDict_GetItemString(makers, KIND_NAMES[k]);
        if (make == NULL || !PyCallable_Check(make)) {
            PyErr_Format(PyExc_TypeError, "makers['%s'] must be callable (one per OKX_VALUES key)",
                         KIND_NAMES[k]);
            Py_DECREF(self);
            return NULL;
        }
        self->make[k] = Py_NewRef(make);
    }
    if (bars_init(self, bars) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyMethodDef OkxFrameReader_methods[] = {
    {"read", (PyCFunction)OkxFrameReader_read, METH_O,
     "read(frame) -> the records of an OKX push of the hot channels, or None: the decoder's"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject OkxFrameReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "marketlab._native.OkxFrameReader",
    .tp_basicsize = sizeof(OkxFrameReader),
    .tp_dealloc = (destructor)OkxFrameReader_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)OkxFrameReader_traverse,
    .tp_clear = (inquiry)OkxFrameReader_clear,
    .tp_doc = "OkxFrameReader(makers, bars): reads OKX pushes of the hot channels to records "
              "(read); None leaves a frame to the decoder.",
    .tp_new = OkxFrameReader_new,
    .tp_methods = OkxFrameReader_methods,
};

int native_okx_init(PyObject *module) {
    classes_init();
    BUY = PyUnicode_InternFromString("buy");
    SELL = PyUnicode_InternFromString("sell");
    SNAPSHOT = PyUnicode_InternFromString("snapshot");
    UPDATE = PyUnicode_InternFromString("update");
    if (BUY == NULL || SELL == NULL || SNAPSHOT == NULL || UPDATE == NULL ||
        PyType_Ready(&OkxFrameReaderType) < 0 ||
        PyModule_AddObjectRef(module, "OkxFrameReader", (PyObject *)&OkxFrameReaderType) < 0)
        return -1;
    /* OKX_VALUES: {kind: the names of its record's values, in `make`'s order} */
    return module_add(module, "OKX_VALUES", values_by_record(KIND_NAMES, VALUES, R_KINDS));
}
