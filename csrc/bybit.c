/* Bybit v5 public spot pushes, compiled: a frame of one of a feed's topics (trades, a ticker,
 * an order-book snapshot or delta, candles) straight to the records BybitDecoder.decode gives
 * for it, without the wire structs in between.
 *
 * BybitTopics(makers): a type that owns a feed's topics. `makers` maps each key of
 *   BYBIT_VALUES to what makes that record: `make(*values)`, the values in the order
 *   BYBIT_VALUES names them (the Python side checks its record classes against them, and hands
 *   an adapter where they differ).
 * add(topic, kind, name, symbol, depth, interval_name, interval, step, offset): one topic
 *   (bytes) and what its name says, worked out by the Python side: `kind` "trade", "ticker",
 *   "kline" or "book"; `name` the symbol as Bybit writes it (each row must name it), `symbol`
 *   ours (the very str each record is given); a book's `depth` (1: the best bid and ask, a
 *   BookTicker); a kline's Bybit `interval_name`, our `interval`, and its candles' length
 *   `step` (ms, > 0) and `offset` (a candle opens at offset + a multiple of step).
 * read(frame) -> list | None
 *   The frame's records, as the Python decoder gives them; None for anything else: a topic not
 *   added, a control answer, and anything merely unusual (escapes in a string, a field twice or
 *   missing, a number out of its rule or not in JSON's grammar, malformed JSON) - the Python
 *   decoder then takes the frame and names what is wrong. Never raises for bad input.
 *
 * The twin of bybit/frames.py's BybitDecoder: numbers are read to the double msgspec reads (the
 * shared cursor, json_cursor.h), and the few figures the decoder works out (a ticker's change,
 * its percent and weighted average, a candle's close) are the same double operations.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "native.h"
#include "json_cursor.h"
#include "records.h"

/* The records this reader makes, and the values each is made of, in the order `make` is
 * given them (build_*'s). */
enum { M_TRADE, M_TICKER, M_KLINE, M_BOOK, M_BOOK_TICKER, N_MAKERS };
static const char *const MAKER_NAMES[] = {"trade", "ticker", "kline", "book", "book_ticker"};
static const char *const TRADE_VALUES[] = {TRADE_VALUE_NAMES, NULL};
static const char *const TICKER_VALUES[] = {TICKER_VALUE_NAMES, NULL};
static const char *const KLINE_VALUES[] = {KLINE_VALUE_NAMES, NULL};
static const char *const BOOK_VALUES[] = {"symbol", "depth",     "action", "bids",
                                          "asks",   "update_id", "seq",    "time", NULL};
static const char *const BOOK_TICKER_VALUES[] = {"symbol", "update_id", "bid", "bid_qty",
                                                 "ask",    "ask_qty",   NULL};
static const char *const *const VALUES[] = {TRADE_VALUES, TICKER_VALUES, KLINE_VALUES,
                                            BOOK_VALUES, BOOK_TICKER_VALUES};

/* What a topic's pushes are read as */
enum { R_TRADE, R_TICKER, R_KLINE, R_BOOK };
static const char *const KIND_NAMES[] = {"trade", "ticker", "kline", "book"};

static PyObject *BUY, *SELL, *SNAPSHOT, *DELTA, *NAN_FLOAT; /* NaN: "not given" */

#define TIME_MIN_MS 1262304000000LL /* marketlab/numbers.py's TIME_MIN_MS: 2010-01-01 */
#define TIME_MAX_MS 4102444800000LL /* and TIME_MAX_MS: 2100-01-01 */
#define DAY_MS 86400000LL

/* --- rows read: words in a buffer that grows (on the caller's stack at first) ------------- */

typedef struct {
    uint64_t *v;
    size_t n, cap;
    int borrowed; /* `v` is the caller's: copied out to grow, never freed */
} Words;

/* room for `k` more words at v[n..]: their index, or -1 when memory ran out */
static Py_ssize_t words_take(Words *w, size_t k) {
    if (w->n + k > w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        while (cap < w->n + k)
            cap *= 2;
        uint64_t *v = PyMem_Malloc(cap * sizeof(uint64_t));
        if (v == NULL)
            return -1;
        memcpy(v, w->v, w->n * sizeof(uint64_t));
        if (!w->borrowed)
            PyMem_Free(w->v);
        w->v = v;
        w->cap = cap;
        w->borrowed = 0;
    }
    Py_ssize_t at = (Py_ssize_t)w->n;
    w->n += k;
    return at;
}

static inline uint64_t bits_of(double f) {
    uint64_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

/* --- a topic's route: what its name says, owned here ------------------------------------ */

typedef struct {
    int kind;              /* R_* */
    PyObject *symbol;      /* ours: the str every record of the topic is given */
    PyObject *name;        /* Bybit's symbol (str): what every row must name */
    PyObject *depth;       /* int: a book's depth */
    int64_t depth_value;   /* the same, to tell level 1 */
    PyObject *iv_name;     /* str: Bybit's interval name, which each candle repeats */
    PyObject *interval;    /* str: ours, as a Kline names it */
    int64_t step, offset;  /* a candle's length and where candles open (ms) */
    const char *name_utf8, *iv_utf8; /* held by `name` and `iv_name` */
    Py_ssize_t name_len, iv_len;
} Route;

typedef struct {
    char *topic; /* NULL: a free slot */
    Py_ssize_t len;
    Route *route;
} RouteSlot;

typedef struct {
    PyObject_HEAD
    PyObject *make[N_MAKERS];
    Route **routes; /* every route added, freed with the table */
    Py_ssize_t n, cap;
    RouteSlot *slots; /* open addressing by topic name; at most half full */
    size_t mask;
} BybitTopics;

static const Route *route_find(const BybitTopics *t, const char *name, Py_ssize_t n) {
    for (size_t i = name_hash(name, n) & t->mask;; i = (i + 1) & t->mask) {
        const RouteSlot *s = &t->slots[i];
        if (s->topic == NULL)
            return NULL;
        if (s->len == n && memcmp(s->topic, name, (size_t)n) == 0)
            return s->route;
    }
}

/* --- payload schemas: a row's fields by name, each with its type and rule ----------------- */

enum {
    T_TIME,     /* TimeMs: ms since the epoch within TIME_MIN_MS..TIME_MAX_MS */
    T_ID,       /* Id: an int64 >= 0 */
    T_AMOUNT,   /* Amount: finite, >= 0 (-0.0 is 0) */
    T_PRICE,    /* Price: finite, > 0 */
    T_CHANGE,   /* Change: finite */
    T_BOOL,
    T_NAME,     /* a string that must be the topic's symbol as Bybit writes it */
    T_INTERVAL, /* a string that must be the topic's interval name */
    T_SIDE,     /* "Buy" (0) or "Sell" (1) */
    T_TRADE_ID, /* a string of 1 to 19 digits, an int64 (trade_id()'s rule) */
    T_LEVELS,   /* [[price, qty], ...]: pairs appended to the words; (first << 32 | count) */
};

typedef struct {
    const char *key;
    Py_ssize_t len; /* of `key` */
    int type;
} Field;
#define FIELD(key, type) {key, sizeof(key) - 1, type}

typedef struct {
    const Field *fields;
    int n;
    uint32_t required; /* the fields without a default (the wire struct's) */
} Schema;

/* The wire structs of bybit/frames.py, field for field; a field's place is its slot */
static const Field TRADE_FIELDS[] = {FIELD("T", T_TIME),   FIELD("s", T_NAME),
                                     FIELD("S", T_SIDE),   FIELD("v", T_AMOUNT),
                                     FIELD("p", T_PRICE),  FIELD("i", T_TRADE_ID)};
enum { TR_TIME, TR_NAME, TR_SIDE, TR_QTY, TR_PRICE, TR_ID, TRADE_WORDS };
static const Field TICKER_FIELDS[] = {
    FIELD("symbol", T_NAME),          FIELD("lastPrice", T_AMOUNT),
    FIELD("highPrice24h", T_AMOUNT),  FIELD("lowPrice24h", T_AMOUNT),
    FIELD("prevPrice24h", T_AMOUNT),  FIELD("volume24h", T_AMOUNT),
    FIELD("turnover24h", T_AMOUNT),   FIELD("price24hPcnt", T_CHANGE),
    FIELD("bid1Price", T_AMOUNT),     FIELD("bid1Size", T_AMOUNT),
    FIELD("ask1Price", T_AMOUNT),     FIELD("ask1Size", T_AMOUNT)};
enum {
    TK_NAME, TK_LAST, TK_HIGH, TK_LOW, TK_PREV, TK_VOLUME, TK_TURNOVER, TK_PCNT,
    TK_BID, TK_BID_QTY, TK_ASK, TK_ASK_QTY, TICKER_WORDS
};
static const Field KLINE_FIELDS[] = {
    FIELD("start", T_TIME),     FIELD("end", T_TIME),       FIELD("interval", T_INTERVAL),
    FIELD("open", T_AMOUNT),    FIELD("close", T_AMOUNT),   FIELD("high", T_AMOUNT),
    FIELD("low", T_AMOUNT),     FIELD("volume", T_AMOUNT),  FIELD("turnover", T_AMOUNT),
    FIELD("confirm", T_BOOL)};
enum {
    KL_START, KL_END, KL_INTERVAL, KL_OPEN, KL_CLOSE, KL_HIGH, KL_LOW, KL_VOLUME,
    KL_TURNOVER, KL_CONFIRM, KLINE_WORDS
};
static const Field BOOK_FIELDS[] = {FIELD("s", T_NAME),   FIELD("b", T_LEVELS),
                                    FIELD("a", T_LEVELS), FIELD("u", T_ID),
                                    FIELD("seq", T_ID)};
enum { BK_NAME, BK_BIDS, BK_ASKS, BK_U, BK_SEQ, BOOK_WORDS };

#define ALL(n) ((1u << (n)) - 1u)
static const Schema TRADE = {TRADE_FIELDS, TRADE_WORDS, ALL(TRADE_WORDS)};
static const Schema TICKER = {TICKER_FIELDS, TICKER_WORDS, ALL(TK_BID)}; /* bid/ask: NaN */
static const Schema KLINE = {KLINE_FIELDS, KLINE_WORDS, ALL(KLINE_WORDS)};
static const Schema BOOK = {BOOK_FIELDS, BOOK_WORDS, ALL(BK_SEQ)}; /* seq: 0 */

/* --- reading a payload into words, no Python object made ---------------------------------- */

static inline int is_text(const char *s, Py_ssize_t n, const char *want, Py_ssize_t want_len) {
    return n == want_len && memcmp(s, want, (size_t)n) == 0;
}

/* trade_id()'s rule: 1 to 19 ASCII digits whose value is an int64 */
static int trade_id_of(const char *s, Py_ssize_t n, int64_t *out) {
    if (n < 1 || n > 19)
        return 0;
    uint64_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits stay below 2^64 */
    }
    if (v > (uint64_t)INT64_MAX)
        return 0;
    *out = (int64_t)v;
    return 1;
}

/* [[price, qty], ...] appended to `w`; (first << 32 | count) in *out */
static int read_levels(Cur *c, Words *w, uint64_t *out) {
    size_t first = w->n;
    if (!eat(c, '['))
        return 0;
    if (!eat(c, ']')) {
        do {
            double price, qty;
            if (!eat(c, '[') || !read_float(c, &price) || !eat(c, ',') ||
                !read_float(c, &qty) || !eat(c, ']') || !(price > 0.0) || !(qty >= 0.0))
                return 0;
            Py_ssize_t at = words_take(w, 2);
            if (at < 0)
                return 0;
            w->v[at] = bits_of(price);
            w->v[at + 1] = bits_of(qty);
        } while (eat(c, ','));
        if (!eat(c, ']'))
            return 0;
    }
    size_t count = (w->n - first) / 2;
    if (first > UINT32_MAX || count > UINT32_MAX)
        return 0;
    *out = ((uint64_t)first << 32) | (uint64_t)count;
    return 1;
}

/* One field's value of `type` into *slot, within its rule */
static int read_field(Cur *c, int type, uint64_t *slot, const Route *r, Words *w) {
    int64_t i;
    double f;
    int flag;
    const char *s;
    Py_ssize_t n;
    switch (type) {
    case T_TIME:
    case T_ID:
        if (!read_int(c, &i) ||
            !(type == T_ID ? i >= 0 : (i >= TIME_MIN_MS && i <= TIME_MAX_MS)))
            return 0;
        *slot = (uint64_t)i;
        return 1;
    case T_AMOUNT:
    case T_PRICE:
    case T_CHANGE: /* read_float gives finite numbers only */
        if (!read_float(c, &f) ||
            !(type == T_CHANGE ? 1 : type == T_PRICE ? f > 0.0 : f >= 0.0))
            return 0;
        *slot = bits_of(f);
        return 1;
    case T_BOOL:
        if (!read_bool(c, &flag))
            return 0;
        *slot = (uint64_t)flag;
        return 1;
    case T_NAME:
        return plain_string(c, &s, &n) && is_text(s, n, r->name_utf8, r->name_len);
    case T_INTERVAL:
        return plain_string(c, &s, &n) && is_text(s, n, r->iv_utf8, r->iv_len);
    case T_SIDE:
        if (!plain_string(c, &s, &n))
            return 0;
        *slot = is_text(s, n, "Sell", 4);
        return *slot || is_text(s, n, "Buy", 3);
    case T_TRADE_ID:
        if (!plain_string(c, &s, &n) || !trade_id_of(s, n, &i))
            return 0;
        *slot = (uint64_t)i;
        return 1;
    case T_LEVELS:
        return read_levels(c, w, slot);
    }
    return 0;
}

/* One JSON object of `schema` into `slots`: 1 when every required field was there once, read
 * as this reader reads it and within its rule (fields it does not know are passed over, as
 * msgspec passes them), else 0. */
static int read_object(Cur *c, const Schema *schema, uint64_t *slots, const Route *r, Words *w) {
    uint32_t seen = 0;
    if (!eat(c, '{'))
        return 0;
    if (!eat(c, '}')) {
        do {
            const char *key;
            Py_ssize_t klen;
            if (!plain_string(c, &key, &klen) || !eat(c, ':'))
                return 0;
            int at = -1;
            for (int k = 0; k < schema->n; k++) {
                if (is_text(key, klen, schema->fields[k].key, schema->fields[k].len)) {
                    at = k;
                    break;
                }
            }
            if (at < 0) {
                if (!skip_value(c, 0))
                    return 0;
                continue;
            }
            if (seen & (1u << at))
                return 0;
            seen |= 1u << at;
            if (!read_field(c, schema->fields[at].type, &slots[at], r, w))
                return 0;
        } while (eat(c, ','));
        if (!eat(c, '}'))
            return 0;
    }
    return (seen & schema->required) == schema->required;
}

/* A list of `schema`'s objects, each row's slots appended to `w` (a row is schema->n words);
 * the number of rows in *rows. */
static int read_rows(Cur *c, const Schema *schema, const Route *r, Words *w, size_t *rows) {
    *rows = 0;
    if (!eat(c, '['))
        return 0;
    if (eat(c, ']'))
        return 1;
    do {
        uint64_t slots[16];
        if (!read_object(c, schema, slots, r, w))
            return 0;
        Py_ssize_t at = words_take(w, (size_t)schema->n);
        if (at < 0)
            return 0;
        memcpy(w->v + at, slots, (size_t)schema->n * sizeof(uint64_t));
        ++*rows;
    } while (eat(c, ','));
    return eat(c, ']');
}

/* What a push's data was read to: rows in the words from `first` (trades, candles), or one
 * object's slots (a ticker, a book) */
typedef struct {
    size_t first, rows;
    uint64_t slots[16];
} Data;

/* A push's `data` of route `r` read at the cursor */
static int read_data(Cur *c, const Route *r, Words *w, Data *d) {
    d->first = w->n;
    d->rows = 0;
    switch (r->kind) {
    case R_TRADE:
        return read_rows(c, &TRADE, r, w, &d->rows);
    case R_KLINE:
        if (!read_rows(c, &KLINE, r, w, &d->rows))
            return 0;
        for (size_t i = 0; i < d->rows; i++) { /* each candle on its interval's boundary */
            int64_t start = (int64_t)w->v[d->first + i * KLINE_WORDS + KL_START];
            if ((start - r->offset) % r->step != 0)
                return 0;
        }
        return 1;
    case R_TICKER:
        for (int k = TK_BID; k < TICKER_WORDS; k++)
            d->slots[k] = bits_of(NAN);
        return read_object(c, &TICKER, d->slots, r, w);
    case R_BOOK:
        d->slots[BK_SEQ] = 0;
        return read_object(c, &BOOK, d->slots, r, w);
    }
    return 0;
}

/* --- the push: its top-level fields (msgspec's _Push), in any order ------------------------ */

enum { TYPE_NONE, TYPE_SNAPSHOT, TYPE_DELTA, TYPE_OTHER };

typedef struct {
    const Route *route;
    int64_t ts;
    int type;
    Data data;
} Push;

#define KEY_IS(k, n, lit) is_text((k), (n), (lit), (Py_ssize_t)sizeof(lit) - 1)

/* A whole frame read: 1 when it is a push of an added topic whose every part this reader
 * reads, else 0. */
static int read_push(const BybitTopics *t, Cur *c, Words *w, Push *push) {
    enum { F_TOPIC = 1, F_TYPE = 2, F_TS = 4, F_DATA = 8 };
    unsigned seen = 0;
    const char *data_at = NULL, *data_end = NULL; /* data before its topic: read after */
    push->route = NULL;
    push->type = TYPE_NONE;
    if (!eat(c, '{') || eat(c, '}'))
        return 0;
    do {
        const char *key, *s;
        Py_ssize_t klen, n;
        unsigned field;
        if (!plain_string(c, &key, &klen) || !eat(c, ':'))
            return 0;
        field = KEY_IS(key, klen, "topic")  ? F_TOPIC
                : KEY_IS(key, klen, "type") ? F_TYPE
                : KEY_IS(key, klen, "ts")   ? F_TS
                : KEY_IS(key, klen, "data") ? F_DATA
                                            : 0;
        if (field == 0) {
            /* an answer's fields, which a push never has: the Python decoder's */
            if (KEY_IS(key, klen, "success") || KEY_IS(key, klen, "ret_msg") ||
                KEY_IS(key, klen, "op") || KEY_IS(key, klen, "req_id") || !skip_value(c, 0))
                return 0;
            continue;
        }
        if (seen & field)
            return 0;
        seen |= field;
        switch (field) {
        case F_TOPIC:
            if (!plain_string(c, &s, &n) || (push->route = route_find(t, s, n)) == NULL)
                return 0;
            break;
        case F_TYPE:
            skip_ws(c);
            if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) {
                c->p += 4; /* None: what no type says (a book's or ticker's is checked) */
            } else {
                if (!plain_string(c, &s, &n))
                    return 0;
                push->type = KEY_IS(s, n, "snapshot") ? TYPE_SNAPSHOT
                             : KEY_IS(s, n, "delta")  ? TYPE_DELTA
                                                      : TYPE_OTHER;
            }
            break;
        case F_TS:
            if (!read_int(c, &push->ts) || push->ts < TIME_MIN_MS || push->ts > TIME_MAX_MS)
                return 0;
            break;
        case F_DATA:
            if (push->route != NULL) {
                if (!read_data(c, push->route, w, &push->data))
                    return 0;
            } else {
                skip_ws(c);
                data_at = c->p;
                if (!skip_value(c, 0))
                    return 0;
                data_end = c->p;
            }
            break;
        }
    } while (eat(c, ','));
    if (!eat(c, '}'))
        return 0;
    skip_ws(c);
    if (c->p != c->end || (seen & (F_TOPIC | F_TS | F_DATA)) != (F_TOPIC | F_TS | F_DATA))
        return 0; /* (a push without a type is read: only a book's or a ticker's is checked) */
    if (data_at != NULL) {
        Cur d = {data_at, data_end, c->gil};
        if (!read_data(&d, push->route, w, &push->data))
            return 0;
        skip_ws(&d);
        if (d.p != d.end)
            return 0;
    }
    if (push->route->kind == R_TICKER)
        return push->type == TYPE_SNAPSHOT; /* spot sends snapshots only */
    if (push->route->kind == R_BOOK)
        return push->type == TYPE_SNAPSHOT || push->type == TYPE_DELTA;
    return 1;
}

/* --- records made of what was read (with the GIL) ---------------------------------------- */

static PyObject *levels_list(const Words *w, uint64_t span) {
    size_t first = (size_t)(span >> 32), n = (size_t)(span & 0xFFFFFFFFu);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        const uint64_t *pair = w->v + first + 2 * i;
        PyObject *level = level_of(F(pair, 0), F(pair, 1));
        if (level == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, level);
    }
    return list;
}

/* The rows' records in a new list, row `i` made by `one(t, route, ts, row)` */
typedef PyObject *(*RowMaker)(const BybitTopics *, const Route *, int64_t, const uint64_t *);

static PyObject *rows_list(const BybitTopics *t, const Push *p, const Words *w, int row_words,
                           RowMaker one) {
    PyObject *list = PyList_New((Py_ssize_t)p->data.rows);
    for (size_t i = 0; list != NULL && i < p->data.rows; i++) {
        PyObject *rec = one(t, p->route, p->ts, w->v + p->data.first + i * (size_t)row_words);
        if (rec == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, rec);
    }
    return list;
}

static PyObject *trade_of(const BybitTopics *t, const Route *r, int64_t ts, const uint64_t *v) {
    /* TRADE_VALUES */
    PyObject *a[] = {Py_NewRef(r->symbol), INT(I(v, TR_ID)),
                     FLT(F(v, TR_PRICE)),  FLT(F(v, TR_QTY)),
                     Py_NewRef(v[TR_SIDE] ? SELL : BUY), INT(I(v, TR_TIME)), INT(ts)};
    return build(t->make[M_TRADE], a, 7);
}

static PyObject *kline_of(const BybitTopics *t, const Route *r, int64_t ts, const uint64_t *v) {
    int64_t start = I(v, KL_START);
    /* KLINE_VALUES; Bybit gives no trade count nor taker-buy volumes */
    PyObject *a[] = {Py_NewRef(r->symbol),     Py_NewRef(r->interval),
                     INT(start),               FLT(F(v, KL_OPEN)),
                     FLT(F(v, KL_HIGH)),       FLT(F(v, KL_LOW)),
                     FLT(F(v, KL_CLOSE)),      FLT(F(v, KL_VOLUME)),
                     INT(start + r->step - 1), FLT(F(v, KL_TURNOVER)),
                     INT(-1),                  Py_NewRef(NAN_FLOAT),
                     Py_NewRef(NAN_FLOAT),     PyBool_FromLong((long)v[KL_CONFIRM]),
                     INT(ts)};
    return build(t->make[M_KLINE], a, 15);
}

/* ticker_of()'s figures: the price 24 h ago is the open, the change a fraction */
static PyObject *ticker_of(const BybitTopics *t, const Route *r, int64_t ts, const uint64_t *v) {
    double last = F(v, TK_LAST), prev = F(v, TK_PREV);
    double volume = F(v, TK_VOLUME), turnover = F(v, TK_TURNOVER);
    double wavg = volume != 0.0 ? turnover / volume : NAN;
    /* TICKER_VALUES */
    PyObject *a[] = {Py_NewRef(r->symbol),
                     INT(ts),
                     FLT(last),
                     Py_NewRef(NAN_FLOAT), /* no last size */
                     FLT(F(v, TK_BID)),
                     FLT(F(v, TK_BID_QTY)),
                     FLT(F(v, TK_ASK)),
                     FLT(F(v, TK_ASK_QTY)),
                     FLT(prev),
                     FLT(F(v, TK_HIGH)),
                     FLT(F(v, TK_LOW)),
                     FLT(volume),
                     FLT(turnover),
                     FLT(last - prev),
                     FLT(100.0 * F(v, TK_PCNT)),
                     FLT(wavg),
                     Py_NewRef(NAN_FLOAT), /* no previous close */
                     INT(ts - DAY_MS),
                     INT(ts),
                     INT(-1), /* no trade ids, no count */
                     INT(-1),
                     INT(-1)};
    return build(t->make[M_TICKER], a, 22);
}

/* a list of one new record (stolen), or NULL */
static PyObject *list_of(PyObject *rec) {
    if (rec == NULL)
        return NULL;
    PyObject *list = PyList_New(1);
    if (list == NULL) {
        Py_DECREF(rec);
        return NULL;
    }
    PyList_SET_ITEM(list, 0, rec);
    return list;
}

/* A book push: a BookMessage, or on level 1 the best bid and ask as a BookTicker numbered by
 * seq (monotonic) rather than u (nothing when a side is empty) */
static PyObject *book_of(const BybitTopics *t, const Push *p, const Words *w) {
    const Route *r = p->route;
    const uint64_t *v = p->data.slots;
    if (r->depth_value == 1) {
        uint64_t bids = v[BK_BIDS], asks = v[BK_ASKS];
        if ((bids & 0xFFFFFFFFu) == 0 || (asks & 0xFFFFFFFFu) == 0)
            return PyList_New(0);
        const uint64_t *bid = w->v + (bids >> 32), *ask = w->v + (asks >> 32);
        int64_t uid = I(v, BK_SEQ) ? I(v, BK_SEQ) : I(v, BK_U);
        /* BOOK_TICKER_VALUES */
        PyObject *a[] = {Py_NewRef(r->symbol), INT(uid),       FLT(F(bid, 0)),
                         FLT(F(bid, 1)),       FLT(F(ask, 0)), FLT(F(ask, 1))};
        return list_of(build(t->make[M_BOOK_TICKER], a, 6));
    }
    /* BOOK_VALUES */
    PyObject *a[] = {Py_NewRef(r->symbol),
                     Py_NewRef(r->depth),
                     Py_NewRef(p->type == TYPE_SNAPSHOT ? SNAPSHOT : DELTA),
                     levels_list(w, v[BK_BIDS]),
                     levels_list(w, v[BK_ASKS]),
                     INT(I(v, BK_U)),
                     INT(I(v, BK_SEQ)),
                     INT(p->ts)};
    return list_of(build(t->make[M_BOOK], a, 8));
}

/* read(frame) -> list | None */
static PyObject *BybitTopics_read(BybitTopics *t, PyObject *frame) {
    if (!PyBytes_CheckExact(frame) || t->n == 0)
        Py_RETURN_NONE;
    uint64_t stack[1024];
    Words w = {stack, 0, sizeof(stack) / sizeof(stack[0]), 1};
    const char *s = PyBytes_AS_STRING(frame);
    Cur c = {s, s + PyBytes_GET_SIZE(frame), 1};
    Push push;
    PyObject *out;
    if (!read_push(t, &c, &w, &push)) {
        out = Py_NewRef(Py_None);
    } else {
        Py_INCREF(t); /* its routes and makers held while a maker runs */
        switch (push.route->kind) {
        case R_TRADE:
            out = rows_list(t, &push, &w, TRADE_WORDS, trade_of);
            break;
        case R_KLINE:
            out = rows_list(t, &push, &w, KLINE_WORDS, kline_of);
            break;
        case R_TICKER:
            out = list_of(ticker_of(t, push.route, push.ts, push.data.slots));
            break;
        default:
            out = book_of(t, &push, &w);
            break;
        }
        Py_DECREF(t);
    }
    if (!w.borrowed)
        PyMem_Free(w.v);
    return out;
}

/* --- the type ------------------------------------------------------------------------------ */

static void route_free(Route *r) {
    Py_XDECREF(r->symbol);
    Py_XDECREF(r->name);
    Py_XDECREF(r->depth);
    Py_XDECREF(r->iv_name);
    Py_XDECREF(r->interval);
    PyMem_Free(r);
}

/* room for one more route, the slots at most half full; -1 when memory ran out */
static int table_grow(BybitTopics *t) {
    if (t->n == t->cap) {
        Py_ssize_t cap = t->cap ? 2 * t->cap : 16;
        Route **routes = PyMem_Realloc(t->routes, (size_t)cap * sizeof(Route *));
        if (routes == NULL)
            return -1;
        t->routes = routes;
        t->cap = cap;
    }
    if (2 * (size_t)(t->n + 1) <= t->mask + 1)
        return 0;
    size_t size = 2 * (t->mask + 1);
    RouteSlot *slots = PyMem_Calloc(size, sizeof(RouteSlot));
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i <= t->mask; i++) {
        RouteSlot *s = &t->slots[i];
        if (s->topic == NULL)
            continue;
        size_t j = name_hash(s->topic, s->len) & (size - 1);
        while (slots[j].topic != NULL)
            j = (j + 1) & (size - 1);
        slots[j] = *s;
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->mask = size - 1;
    return 0;
}

/* add(topic, kind, name, symbol, depth, interval_name, interval, step, offset) */
static PyObject *BybitTopics_add(BybitTopics *t, PyObject *const *args, Py_ssize_t nargs) {
    static const char USAGE[] =
        "add(topic: bytes, kind: str, name: str, symbol: str, depth: int, interval_name: str, "
        "interval: str, step: int, offset: int)";
    if (nargs != 9 || !PyBytes_Check(args[0]) || !PyUnicode_Check(args[1]) ||
        !PyUnicode_Check(args[2]) || !PyUnicode_Check(args[3]) || !PyLong_Check(args[4]) ||
        !PyUnicode_Check(args[5]) || !PyUnicode_Check(args[6]) || !PyLong_Check(args[7]) ||
        !PyLong_Check(args[8])) {
        PyErr_SetString(PyExc_TypeError, USAGE);
        return NULL;
    }
    int kind = -1;
    for (int k = R_TRADE; k <= R_BOOK; k++)
        if (PyUnicode_CompareWithASCIIString(args[1], KIND_NAMES[k]) == 0)
            kind = k;
    if (kind < 0) {
        PyErr_Format(PyExc_ValueError, "no kind %R here (trade, ticker, kline, book)", args[1]);
        return NULL;
    }
    int64_t depth = PyLong_AsLongLong(args[4]);
    int64_t step = PyLong_AsLongLong(args[7]);
    int64_t offset = PyLong_AsLongLong(args[8]);
    if (PyErr_Occurred())
        return NULL;
    if (depth < 0 || (kind == R_KLINE && (step <= 0 || offset < 0 || offset >= step))) {
        PyErr_SetString(PyExc_ValueError, "a book's depth is >= 0, a kline's step > 0 and its "
                                          "offset within a step");
        return NULL;
    }
    Route *r = PyMem_Calloc(1, sizeof(Route));
    if (r == NULL)
        return PyErr_NoMemory();
    r->kind = kind;
    r->depth_value = depth;
    r->step = step;
    r->offset = offset;
    r->name = Py_NewRef(args[2]);
    r->symbol = Py_NewRef(args[3]);
    r->depth = Py_NewRef(args[4]);
    r->iv_name = Py_NewRef(args[5]);
    r->interval = Py_NewRef(args[6]);
    r->name_utf8 = PyUnicode_AsUTF8AndSize(r->name, &r->name_len);
    r->iv_utf8 = r->name_utf8 ? PyUnicode_AsUTF8AndSize(r->iv_name, &r->iv_len) : NULL;
    if (r->iv_utf8 == NULL || table_grow(t) < 0) {
        route_free(r);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    const char *key = PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    size_t i = name_hash(key, len) & t->mask;
    while (t->slots[i].topic != NULL &&
           !(t->slots[i].len == len && memcmp(t->slots[i].topic, key, (size_t)len) == 0))
        i = (i + 1) & t->mask;
    RouteSlot *slot = &t->slots[i];
    if (slot->topic == NULL) { /* a new topic; one added again takes its new route */
        slot->topic = PyMem_Malloc((size_t)len + 1);
        if (slot->topic == NULL) {
            route_free(r);
            return PyErr_NoMemory();
        }
        memcpy(slot->topic, key, (size_t)len + 1);
        slot->len = len;
    }
    slot->route = r;
    t->routes[t->n++] = r; /* (a replaced route stays, unused, until the table goes) */
    Py_RETURN_NONE;
}

static Py_ssize_t BybitTopics_len(BybitTopics *t) {
    Py_ssize_t n = 0;
    for (size_t i = 0; i <= t->mask; i++)
        n += t->slots[i].topic != NULL;
    return n;
}

static void BybitTopics_dealloc(BybitTopics *t) {
    for (size_t i = 0; t->slots != NULL && i <= t->mask; i++)
        PyMem_Free(t->slots[i].topic);
    for (Py_ssize_t i = 0; i < t->n; i++)
        route_free(t->routes[i]);
    for (int k = 0; k < N_MAKERS; k++)
        Py_XDECREF(t->make[k]);
    PyMem_Free(t->slots);
    PyMem_Free(t->routes);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

/* BybitTopics(makers): makers[name] for every key of BYBIT_VALUES */
static PyObject *BybitTopics_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *makers;
    if (!PyArg_ParseTuple(args, "O!:BybitTopics", &PyDict_Type, &makers))
        return NULL;
    BybitTopics *t = (BybitTopics *)type->tp_alloc(type, 0);
    if (t == NULL)
        return NULL;
    t->mask = 15;
    t->slots = PyMem_Calloc(t->mask + 1, sizeof(RouteSlot));
    if (t->slots == NULL) {
        Py_DECREF(t);
        return PyErr_NoMemory();
    }
    for (int k = 0; k < N_MAKERS; k++) {
        PyObject *make = PyDict_GetItemString(makers, MAKER_NAMES[k]);
        if (make == NULL || !PyCallable_Check(make)) {
            PyErr_Format(PyExc_TypeError, "BybitTopics: makers[%s] must be callable",
                         MAKER_NAMES[k]);
            Py_DECREF(t);
            return NULL;
        }
        t->make[k] = Py_NewRef(make);
    }
    return (PyObject *)t;
}

static PyMethodDef BybitTopics_methods[] = {
    {"add", (PyCFunction)(void (*)(void))BybitTopics_add, METH_FASTCALL,
     "add(topic, kind, name, symbol, depth, interval_name, interval, step, offset): a topic "
     "whose pushes this reads"},
    {"read", (PyCFunction)BybitTopics_read, METH_O,
     "read(frame) -> the records of a push of an added topic, or None: the Python decoder's"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods BybitTopics_seq = {.sq_length = (lenfunc)BybitTopics_len};

static PyTypeObject BybitTopicsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "marketlab._native.BybitTopics",
    .tp_basicsize = sizeof(BybitTopics),
    .tp_dealloc = (destructor)BybitTopics_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "BybitTopics(makers): a feed's Bybit spot topics (add), whose pushes read() makes "
              "into records.",
    .tp_new = BybitTopics_new,
    .tp_methods = BybitTopics_methods,
    .tp_as_sequence = &BybitTopics_seq,
};

int native_bybit_init(PyObject *module) {
    classes_init();
    BUY = PyUnicode_InternFromString("buy");
    SELL = PyUnicode_InternFromString("sell");
    SNAPSHOT = PyUnicode_InternFromString("snapshot");
    DELTA = PyUnicode_InternFromString("delta");
    NAN_FLOAT = PyFloat_FromDouble(NAN);
    if (BUY == NULL || SELL == NULL || SNAPSHOT == NULL || DELTA == NULL || NAN_FLOAT == NULL ||
        PyType_Ready(&BybitTopicsType) < 0 ||
        PyModule_AddObjectRef(module, "BybitTopics", (PyObject *)&BybitTopicsType) < 0)
        return -1;
    /* BYBIT_VALUES: {record name: the names of its values, in `make`'s order} */
    return module_add(module, "BYBIT_VALUES", values_by_record(MAKER_NAMES, VALUES, N_MAKERS));
}
