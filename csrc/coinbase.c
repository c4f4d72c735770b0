/* Coinbase Advanced Trade frames, compiled: a message of one of the hot channels (l2_data,
 * market_trades, ticker, ticker_batch, heartbeats) straight to the Message the Python decoder
 * (venues/coinbase/frames.py, CoinbaseDecoder.decode) gives for it, without msgspec's wire
 * structs in between.
 *
 * CoinbaseReader(message, book, trade, ticker, heartbeat, symbol_of): a type that owns the
 *   makers of the five records, the function naming a product (Coinbase's "BTC-USD" -> our
 *   symbol; the decoder's own) and what it has named so far.
 * read(frame) -> the Message, or None
 *   None for anything else or anything unusual: another channel, an error or control message,
 *   a string with escapes, a field missing or given twice, a number out of its rule, a time
 *   not in the shapes Coinbase sends, malformed JSON. The Python decoder then takes the frame
 *   and says what it is or what is wrong. Nothing is raised for what a frame holds.
 *
 * A frame is read in two steps: first into plain C values (no Python object made, so a frame
 * that turns out unusual half way costs nothing to drop), then made into records by calling
 * each record's maker with the values in the order COINBASE_RECORDS names them (the Python side
 * checks its classes against those names, and hands an adapter where they differ).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "native.h"
#include "json_cursor.h"
#include "records.h"

#define TIME_MIN_MS 1262304000000LL /* 2010-01-01, marketlab.numbers */
#define TIME_MAX_MS 4102444800000LL /* 2100-01-01 */
#define DAY_MS 86400000LL

/* The records made, and the values of each in the order its maker is given them */
enum { R_MESSAGE, R_BOOK, R_TRADE, R_TICKER, R_HEARTBEAT, R_COUNT };
static const char *const RECORD_NAMES[] = {"message", "book", "trade", "ticker", "heartbeat"};
static const char *const MESSAGE_VALUES[] = {"sequence_num", "channel", "events", NULL};
static const char *const BOOK_VALUES[] = {"symbol", "action",       "bids",
                                          "asks",   "sequence_num", "time", NULL};
static const char *const TRADE_VALUES[] = {TRADE_VALUE_NAMES, NULL};
static const char *const TICKER_VALUES[] = {TICKER_VALUE_NAMES, NULL};
static const char *const HEARTBEAT_VALUES[] = {"counter", "current_time", NULL};
static const char *const *const VALUES[] = {MESSAGE_VALUES, BOOK_VALUES, TRADE_VALUES,
                                            TICKER_VALUES, HEARTBEAT_VALUES};

/* The channels read here */
enum { CH_L2, CH_TRADES, CH_TICKER, CH_TICKER_BATCH, CH_HEARTBEATS, CH_COUNT };
static const char *const CHANNEL_NAMES[] = {"l2_data", "market_trades", "ticker", "ticker_batch",
                                            "heartbeats"};

/* interned strs the records hold: the channels, a book message's action, a trade's side */
static PyObject *CHANNEL[CH_COUNT], *SNAPSHOT, *UPDATE, *BUY, *SELL;
/* math.nan, as a float and a double: a ticker's numbers that Coinbase does not give */
static double NOT_A_NUMBER;
static PyObject *NAN_FLOAT;

/* --- RFC 3339 times ---------------------------------------------------------------------
 * Only the shapes rfc3339_ms reads on its fast path: YYYY-MM-DDTHH:MM:SS then Z, or a
 * fraction of 3 to 9 digits and Z (ms: the fraction truncated). Every field is checked against
 * its range, the day against its month; anything else is left to the Python path, which keeps
 * its answers and its errors. */

static inline int digits_at(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* Days from 1970-01-01 to a civil date (proleptic Gregorian; H. Hinnant's days_from_civil) */
static inline int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static inline int leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* 1 and the time in ms when `s` (n bytes) is one of the shapes read here, within the venues'
 * years; else 0 */
static int rfc3339_ms(const char *s, Py_ssize_t n, int64_t *out) {
    static const int MONTH_DAYS[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, ms = 0;
    if (n != 20 && !(n >= 24 && n <= 30))
        return 0;
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[n - 1] != 'Z')
        return 0;
    if (!digits_at(s, 4, &y) || !digits_at(s + 5, 2, &mo) || !digits_at(s + 8, 2, &d) ||
        !digits_at(s + 11, 2, &h) || !digits_at(s + 14, 2, &mi) || !digits_at(s + 17, 2, &sec))
        return 0;
    if (n > 20) {
        int rest;
        if (s[19] != '.' || !digits_at(s + 20, 3, &ms) ||
            !digits_at(s + 23, (int)n - 24, &rest)) /* digits past the third: only checked */
            return 0;
    }
    if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59)
        return 0;
    if (d > MONTH_DAYS[mo - 1] + (mo == 2 && leap(y)))
        return 0;
    int64_t t = days_from_civil(y, mo, d) * DAY_MS + (int64_t)h * 3600000 +
                (int64_t)mi * 60000 + (int64_t)sec * 1000 + ms;
    if (t < TIME_MIN_MS || t > TIME_MAX_MS)
        return 0;
    *out = t;
    return 1;
}

/* --- a frame read into plain values ------------------------------------------------------ */

typedef struct {
    const char *s;
    Py_ssize_t n;
} Text; /* a plain (ASCII, no escapes) string of the frame */

typedef struct {
    Text product;
    int snapshot;
    size_t first, count; /* its levels in the frame's level array */
} BookEvent;

typedef struct {
    double price, qty;
    int bid;
} Update;

typedef struct {
    Text product;
    int64_t id, time;
    double price, size;
    int maker_buys; /* the maker's side is BUY: the taker sold */
} TradeRow;

/* a ticker's numbers, in the order TICKER_KEYS names them (NaN: not given) */
enum { TK_PRICE, TK_VOLUME, TK_LOW, TK_HIGH, TK_PCT, TK_BID, TK_BID_QTY, TK_ASK, TK_ASK_QTY, TK_N };
static const char *const TICKER_KEYS[] = {"price",    "volume_24_h",       "low_24_h",
                                          "high_24_h", "price_percent_chg_24_h", "best_bid",
                                          "best_bid_quantity", "best_ask", "best_ask_quantity"};

typedef struct {
    Text product;
    double v[TK_N];
} TickerRow;

typedef struct {
    int64_t counter;
    Text current_time;
} BeatRow;

/* A growing array of `size`-byte rows: the first ones in `bytes` bytes on the caller's stack,
 * more on the heap. */
typedef struct {
    char *v;
    size_t n, cap, size, bytes;
    int heap;
} Rows;

/* rows of `size` bytes from now on (while none is held) */
static void rows_shape(Rows *r, size_t size) {
    r->size = size;
    r->cap = r->bytes / size;
}

static void *rows_push(Rows *r) {
    if (r->n == r->cap) {
        size_t cap = 2 * r->cap;
        char *v = PyMem_Malloc(cap * r->size);
        if (v == NULL)
            return NULL;
        memcpy(v, r->v, r->n * r->size);
        if (r->heap)
            PyMem_Free(r->v);
        r->v = v;
        r->cap = cap;
        r->heap = 1;
    }
    return r->v + r->size * r->n++;
}

static void rows_free(Rows *r) {
    if (r->heap)
        PyMem_Free(r->v);
}

#define ROW(rows, type, i) (((type *)(rows).v)[i])

/* What one frame holds, as read */
typedef struct {
    int channel; /* CH_*, -1 before it is known */
    int64_t seq, ts;
    Rows events;  /* BookEvent, TradeRow, TickerRow or BeatRow by channel */
    Rows updates; /* an l2_data frame's levels (Update) */
} Frame;

/* the size of an event row, by channel */
static const size_t ROW_SIZE[] = {sizeof(BookEvent), sizeof(TradeRow), sizeof(TickerRow),
                                  sizeof(TickerRow), sizeof(BeatRow)};

/* A key of an object: 1 and its text when it is one (a plain string, then ':') */
static inline int key_of(Cur *c, Text *k) { return plain_string(c, &k->s, &k->n) && eat(c, ':'); }

static inline int is(const Text *t, const char *word) {
    size_t n = strlen(word);
    return (size_t)t->n == n && memcmp(t->s, word, n) == 0;
}

/* A field seen once: 1 the first time (marked in `seen`), 0 when it was seen before */
static inline int once(uint32_t *seen, int bit) {
    if (*seen & (1u << bit))
        return 0;
    *seen |= 1u << bit;
    return 1;
}

/* A JSON array of objects, each read by `item`; 1 when all were read. */
typedef int (*ItemReader)(Cur *c, Frame *f, const void *ctx);

static int read_array(Cur *c, Frame *f, ItemReader item, const void *ctx) {
    if (!eat(c, '['))
        return 0;
    if (eat(c, ']'))
        return 1;
    do {
        if (!item(c, f, ctx))
            return 0;
    } while (eat(c, ','));
    return eat(c, ']');
}

/* An object being read: its frame, the fields seen (by each reader's own bits; a field twice
 * is refused), what they are read into, and what the reader was given */
typedef struct {
    Frame *f;
    uint32_t seen;
    void *into;
    const void *ctx;
} Obj;

/* Reads the value of one field (1), refuses it (0), or passes over a key it does not know */
typedef int (*FieldReader)(Cur *c, const Text *key, Obj *o);

/* One JSON object, each field by `field`; 1 when all were read. An empty one is read too: the
 * caller's check of the fields it needs refuses it. */
static int read_object(Cur *c, FieldReader field, Obj *o) {
    Text k;
    if (!eat(c, '{'))
        return 0;
    if (eat(c, '}'))
        return 1;
    do {
        if (!key_of(c, &k) || !field(c, &k, o))
            return 0;
    } while (eat(c, ','));
    return eat(c, '}');
}

static int push(Rows *rows, const void *row) {
    void *at = rows_push(rows);
    if (at == NULL)
        return 0;
    memcpy(at, row, rows->size);
    return 1;
}

/* 1 to 18 ASCII digits (always an int64), as a trade id or a heartbeat's count in a string */
static int digits_value(const Text *t, int64_t *out) {
    int64_t v = 0;
    if (t->n < 1 || t->n > 18)
        return 0;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        if (t->s[i] < '0' || t->s[i] > '9')
            return 0;
        v = v * 10 + (t->s[i] - '0');
    }
    *out = v;
    return 1;
}

/* l2_data's levels: {"side", "price_level", "new_quantity", "event_time"?} */
enum { U_SIDE, U_PRICE, U_QTY, U_WHEN };

static int update_field(Cur *c, const Text *k, Obj *o) {
    Update *u = o->into;
    Text v;
    if (is(k, "side")) {
        if (!once(&o->seen, U_SIDE) || !plain_string(c, &v.s, &v.n))
            return 0;
        u->bid = is(&v, "bid");
        return u->bid || is(&v, "offer");
    }
    if (is(k, "price_level"))
        return once(&o->seen, U_PRICE) && read_float(c, &u->price) && u->price > 0.0;
    if (is(k, "new_quantity"))
        return once(&o->seen, U_QTY) && read_float(c, &u->qty) && u->qty >= 0.0;
    if (is(k, "event_time")) /* not kept, but typed: a string */
        return once(&o->seen, U_WHEN) && plain_string(c, &v.s, &v.n);
    return skip_value(c, 0);
}

static int read_update(Cur *c, Frame *f, const void *ctx) {
    Update u;
    Obj o = {f, 0, &u, ctx};
    const uint32_t needed = 1u << U_SIDE | 1u << U_PRICE | 1u << U_QTY;
    return read_object(c, update_field, &o) && (o.seen & needed) == needed &&
           push(&f->updates, &u);
}

/* l2_data's events: {"type", "product_id", "updates"} */
enum { E_TYPE, E_PRODUCT, E_UPDATES };

static int book_event_field(Cur *c, const Text *k, Obj *o) {
    BookEvent *e = o->into;
    Text v;
    if (is(k, "type")) {
        if (!once(&o->seen, E_TYPE) || !plain_string(c, &v.s, &v.n))
            return 0;
        e->snapshot = is(&v, "snapshot");
        return e->snapshot || is(&v, "update");
    }
    if (is(k, "product_id"))
        return once(&o->seen, E_PRODUCT) && plain_string(c, &e->product.s, &e->product.n);
    if (is(k, "updates")) {
        e->first = o->f->updates.n;
        int ok = once(&o->seen, E_UPDATES) && read_array(c, o->f, read_update, NULL);
        e->count = o->f->updates.n - e->first;
        return ok;
    }
    return skip_value(c, 0);
}

static int read_book_event(Cur *c, Frame *f, const void *ctx) {
    BookEvent e;
    Obj o = {f, 0, &e, ctx};
    return read_object(c, book_event_field, &o) && o.seen == 7u && push(&f->events, &e);
}

/* market_trades' trades: {"trade_id", "product_id", "price", "size", "side", "time"} */
enum { T_ID, T_PRODUCT, T_PRICE, T_SIZE, T_SIDE, T_TIME };

static int trade_field(Cur *c, const Text *k, Obj *o) {
    TradeRow *t = o->into;
    Text v;
    if (is(k, "trade_id"))
        return once(&o->seen, T_ID) && plain_string(c, &v.s, &v.n) && digits_value(&v, &t->id);
    if (is(k, "product_id"))
        return once(&o->seen, T_PRODUCT) && plain_string(c, &t->product.s, &t->product.n);
    if (is(k, "price"))
        return once(&o->seen, T_PRICE) && read_float(c, &t->price) && t->price > 0.0;
    if (is(k, "size"))
        return once(&o->seen, T_SIZE) && read_float(c, &t->size) && t->size >= 0.0;
    if (is(k, "side")) {
        if (!once(&o->seen, T_SIDE) || !plain_string(c, &v.s, &v.n))
            return 0;
        t->maker_buys = is(&v, "BUY");
        return t->maker_buys || is(&v, "SELL");
    }
    if (is(k, "time"))
        return once(&o->seen, T_TIME) && plain_string(c, &v.s, &v.n) &&
               rfc3339_ms(v.s, v.n, &t->time);
    return skip_value(c, 0);
}

static int read_trade(Cur *c, Frame *f, const void *ctx) {
    TradeRow t;
    Obj o = {f, 0, &t, ctx};
    return read_object(c, trade_field, &o) && o.seen == 63u && push(&f->events, &t);
}

/* ticker's and ticker_batch's rows: {"product_id", "price", and the optional numbers}; bits
 * 0..TK_N-1 of `seen` the numbers, TK_N the product */
static int ticker_field(Cur *c, const Text *k, Obj *o) {
    TickerRow *t = o->into;
    if (is(k, "product_id"))
        return once(&o->seen, TK_N) && plain_string(c, &t->product.s, &t->product.n);
    for (int i = 0; i < TK_N; i++) {
        if (!is(k, TICKER_KEYS[i]))
            continue;
        /* the price is a Price (> 0), the change any finite number, the rest Amounts */
        return once(&o->seen, i) && read_float(c, &t->v[i]) &&
               (i == TK_PCT || (i == TK_PRICE ? t->v[i] > 0.0 : t->v[i] >= 0.0));
    }
    return skip_value(c, 0);
}

static int read_ticker(Cur *c, Frame *f, const void *ctx) {
    TickerRow t;
    Obj o = {f, 0, &t, ctx};
    const uint32_t needed = 1u << TK_N | 1u << TK_PRICE;
    for (int i = 0; i < TK_N; i++)
        t.v[i] = NOT_A_NUMBER;
    return read_object(c, ticker_field, &o) && (o.seen & needed) == needed &&
           push(&f->events, &t);
}

/* market_trades' and the tickers' events: {"type"?, "trades" or "tickers": [...]}, the list's
 * items read by the ItemReader `ctx` points to */
enum { L_TYPE, L_LIST };

static int list_event_field(Cur *c, const Text *k, Obj *o) {
    Text v;
    if (is(k, "type"))
        return once(&o->seen, L_TYPE) && plain_string(c, &v.s, &v.n);
    if (is(k, o->f->channel == CH_TRADES ? "trades" : "tickers"))
        return once(&o->seen, L_LIST) && read_array(c, o->f, *(const ItemReader *)o->ctx, NULL);
    return skip_value(c, 0);
}

static int read_list_event(Cur *c, Frame *f, const void *ctx) {
    Obj o = {f, 0, NULL, ctx};
    return read_object(c, list_event_field, &o) && (o.seen & 1u << L_LIST);
}

/* heartbeats' events: {"current_time"?, "heartbeat_counter"?: an Id, or up to 18 digits} */
enum { B_WHEN, B_COUNTER };

static int beat_field(Cur *c, const Text *k, Obj *o) {
    BeatRow *b = o->into;
    Text v;
    if (is(k, "current_time"))
        return once(&o->seen, B_WHEN) &&
               plain_string(c, &b->current_time.s, &b->current_time.n);
    if (is(k, "heartbeat_counter")) {
        if (!once(&o->seen, B_COUNTER))
            return 0;
        skip_ws(c);
        if (BYTE(c, c->p) == '"')
            return plain_string(c, &v.s, &v.n) && digits_value(&v, &b->counter);
        return read_int(c, &b->counter) && b->counter >= 0;
    }
    return skip_value(c, 0);
}

static int read_beat(Cur *c, Frame *f, const void *ctx) {
    BeatRow b = {0, {"", 0}}; /* the wire struct's defaults */
    Obj o = {f, 0, &b, ctx};
    return read_object(c, beat_field, &o) && push(&f->events, &b);
}

static const ItemReader TRADES = read_trade, TICKERS = read_ticker;

/* The events of a frame of a known channel */
static int read_events(Cur *c, Frame *f) {
    switch (f->channel) {
    case CH_L2:
        return read_array(c, f, read_book_event, NULL);
    case CH_TRADES:
        return read_array(c, f, read_list_event, &TRADES);
    case CH_TICKER:
    case CH_TICKER_BATCH:
        return read_array(c, f, read_list_event, &TICKERS);
    default:
        return read_array(c, f, read_beat, NULL);
    }
}

/* The envelope {"channel", "client_id", "timestamp", "sequence_num", "events"}: its events are
 * read as its channel's where it is known by then, else passed over and read once it is (`ctx`
 * keeps where they begin) */
enum { V_CHANNEL, V_TIMESTAMP, V_SEQ, V_EVENTS };

static int envelope_field(Cur *c, const Text *k, Obj *o) {
    Frame *f = o->f;
    Text v;
    if (is(k, "channel")) {
        if (!once(&o->seen, V_CHANNEL) || !plain_string(c, &v.s, &v.n))
            return 0;
        for (int ch = 0; ch < CH_COUNT && f->channel < 0; ch++)
            if (is(&v, CHANNEL_NAMES[ch]))
                f->channel = ch;
        if (f->channel < 0)
            return 0;
        rows_shape(&f->events, ROW_SIZE[f->channel]);
        return 1;
    }
    if (is(k, "timestamp"))
        return once(&o->seen, V_TIMESTAMP) && plain_string(c, &v.s, &v.n) &&
               rfc3339_ms(v.s, v.n, &f->ts);
    if (is(k, "sequence_num"))
        return once(&o->seen, V_SEQ) && read_int(c, &f->seq) && f->seq >= 0;
    if (is(k, "events")) {
        if (!once(&o->seen, V_EVENTS))
            return 0;
        if (f->channel >= 0)
            return read_events(c, f);
        skip_ws(c);
        o->ctx = c->p;
        return skip_value(c, 0);
    }
    if (is(k, "type") || is(k, "message") || is(k, "reason"))
        return 0; /* an error's fields: the Python decoder's */
    return skip_value(c, 0);
}

/* 1 when the whole frame is a message the reader reads, read into `f` */
static int read_frame(const char *frame, Py_ssize_t size, Frame *f) {
    Cur c = {frame, frame + size, 1};
    Obj o = {f, 0, NULL, NULL};
    if (!read_object(&c, envelope_field, &o) || o.seen != 15u)
        return 0;
    skip_ws(&c);
    if (c.p != c.end)
        return 0;
    if (o.ctx != NULL) { /* the events came before the channel */
        Cur again = {o.ctx, frame + size, 1};
        return read_events(&again, f);
    }
    return 1;
}

/* --- the reader: records made of a frame's values ---------------------------------------- */

typedef struct {
    char *name; /* NULL: a free slot */
    Py_ssize_t len;
    PyObject *symbol; /* interned: equal symbols are one object */
} ProductSlot;

#define PRODUCTS_KEPT 4096 /* names kept; emptied when full (as the decoder's own) */

typedef struct {
    PyObject_HEAD
    PyObject *make[R_COUNT];
    PyObject *symbol_of;
    ProductSlot *products; /* open addressing by name, at most half full */
    size_t mask, held;
} Reader;

static void products_clear(Reader *r) {
    for (size_t i = 0; r->products != NULL && i <= r->mask; i++) {
        PyMem_Free(r->products[i].name);
        r->products[i].name = NULL;
        Py_CLEAR(r->products[i].symbol);
    }
    r->held = 0;
}

/* The slot of a product's name in the reader's table, or the empty slot where it would go */
static size_t product_slot(const Reader *r, const Text *product) {
    size_t i = name_hash(product->s, product->n) & r->mask;
    for (; r->products[i].name != NULL; i = (i + 1) & r->mask) {
        const ProductSlot *s = &r->products[i];
        if (s->len == product->n && memcmp(s->name, product->s, (size_t)product->n) == 0)
            break;
    }
    return i;
}

/* Our symbol of a product (a new reference: the names kept may be let go of meanwhile), from
 * what was named before or by `symbol_of`; NULL with no error set when `symbol_of` refuses the
 * product (a ValueError), NULL with the error for any other failure. */
static PyObject *symbol_for(Reader *r, const Text *product) {
    size_t i = product_slot(r, product);
    if (r->products[i].name != NULL)
        return Py_NewRef(r->products[i].symbol);
    PyObject *text = PyUnicode_DecodeASCII(product->s, product->n, "strict");
    if (text == NULL)
        return NULL;
    PyObject *symbol = PyObject_CallOneArg(r->symbol_of, text);
    Py_DECREF(text);
    if (symbol == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ValueError))
            PyErr_Clear(); /* no product: the Python decoder says so */
        return NULL;
    }
    if (!PyUnicode_CheckExact(symbol)) {
        PyErr_Format(PyExc_TypeError, "symbol_of gave %R, not a str", symbol);
        Py_DECREF(symbol);
        return NULL;
    }
    PyUnicode_InternInPlace(&symbol);
    /* symbol_of ran Python: another thread may have used the table meanwhile */
    if (r->held >= PRODUCTS_KEPT)
        products_clear(r);
    i = product_slot(r, product);
    if (r->products[i].name != NULL)
        return symbol; /* named meanwhile (equal: interned, the same object) */
    char *name = PyMem_Malloc((size_t)product->n + 1);
    if (name == NULL) {
        Py_DECREF(symbol);
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(name, product->s, (size_t)product->n);
    name[product->n] = '\0';
    r->products[i].name = name;
    r->products[i].len = product->n;
    r->products[i].symbol = Py_NewRef(symbol);
    r->held++;
    return symbol;
}

/* a number of a record: NaN (not given, or worked out of one not given) as math.nan is */
static inline PyObject *number(double x) { return isnan(x) ? Py_NewRef(NAN_FLOAT) : FLT(x); }

/* An l2_data frame's book messages: one per product and run of updates, as the decoder merges
 * them (one product's updates in one message are one change of its book, in the order sent) */
#define BOOK_EVENTS_MAX 64 /* more products in one message: the Python decoder's */
typedef struct {
    PyObject *symbol;
    int snapshot;
    Py_ssize_t bids, asks;
} BookOut;

static int book_events(Reader *r, const Frame *f, PyObject *list) {
    size_t n = f->events.n, outs = 0, made = 0;
    BookOut out[BOOK_EVENTS_MAX];
    size_t target[BOOK_EVENTS_MAX]; /* each event's message */
    PyObject *bids[BOOK_EVENTS_MAX], *asks[BOOK_EVENTS_MAX];
    Py_ssize_t nb[BOOK_EVENTS_MAX] = {0}, na[BOOK_EVENTS_MAX] = {0};
    int rc = -1;
    if (n > BOOK_EVENTS_MAX)
        return 0;
    for (size_t e = 0; e < n; e++) {
        const BookEvent *ev = &ROW(f->events, BookEvent, e);
        PyObject *symbol = symbol_for(r, &ev->product);
        if (symbol == NULL) {
            rc = PyErr_Occurred() ? -1 : 0;
            goto done;
        }
        size_t at = outs; /* the product's last message, if any (its place in `out`) */
        for (size_t j = outs; j-- > 0;)
            if (out[j].symbol == symbol) {
                at = j;
                break;
            }
        if (at == outs || ev->snapshot || out[at].snapshot) {
            at = outs++;
            out[at] = (BookOut){symbol, ev->snapshot, 0, 0}; /* holds the reference */
        } else {
            Py_DECREF(symbol); /* held there already (interned: one object) */
        }
        target[e] = at;
        for (size_t u = ev->first; u < ev->first + ev->count; u++) {
            if (ROW(f->updates, Update, u).bid)
                out[at].bids++;
            else
                out[at].asks++;
        }
    }
    for (; made < outs; made++) {
        bids[made] = PyList_New(out[made].bids);
        asks[made] = PyList_New(out[made].asks);
        if (bids[made] == NULL || asks[made] == NULL) {
            Py_XDECREF(bids[made]);
            Py_XDECREF(asks[made]);
            goto done;
        }
    }
    for (size_t e = 0; e < n; e++) {
        const BookEvent *ev = &ROW(f->events, BookEvent, e);
        size_t at = target[e];
        for (size_t u = ev->first; u < ev->first + ev->count; u++) {
            const Update *up = &ROW(f->updates, Update, u);
            PyObject *lv = level_of(up->price, up->qty);
            if (lv == NULL)
                goto done;
            if (up->bid)
                PyList_SET_ITEM(bids[at], nb[at]++, lv);
            else
                PyList_SET_ITEM(asks[at], na[at]++, lv);
        }
    }
    rc = 1;
    for (size_t j = 0; j < outs; j++) {
        PyObject *a[] = {Py_NewRef(out[j].symbol), Py_NewRef(out[j].snapshot ? SNAPSHOT : UPDATE),
                         Py_NewRef(bids[j]),       Py_NewRef(asks[j]),
                         INT(f->seq),              INT(f->ts)};
        PyObject *msg = build(r->make[R_BOOK], a, 6);
        if (msg == NULL || PyList_Append(list, msg) < 0) {
            Py_XDECREF(msg);
            rc = -1;
            break;
        }
        Py_DECREF(msg);
    }
done: /* a list not filled (an error on the way) holds NULLs, which its dealloc passes over */
    for (size_t j = 0; j < made; j++) {
        Py_DECREF(bids[j]);
        Py_DECREF(asks[j]);
    }
    for (size_t j = 0; j < outs; j++)
        Py_DECREF(out[j].symbol);
    return rc;
}

/* market_trades' trades, oldest first per product: (symbol, trade id) ascending, stable, as the
 * decoder sorts them (Coinbase sends them newest first). Symbols are interned: equal ones are
 * the same object, other ones ordered as str orders them. */
typedef struct {
    PyObject *symbol;
    int64_t id;
    size_t row;
} TradeKey;

static inline int trade_before(const TradeKey *a, const TradeKey *b) {
    if (a->symbol != b->symbol)
        return PyUnicode_Compare(a->symbol, b->symbol) < 0;
    return a->id < b->id;
}

/* a stable merge sort of `k` (n), `tmp` as large */
static void sort_trades(TradeKey *k, TradeKey *tmp, size_t n) {
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = mid + width < n ? mid + width : n;
            size_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                tmp[o++] = trade_before(&k[j], &k[i]) ? k[j++] : k[i++];
            while (i < mid)
                tmp[o++] = k[i++];
            while (j < hi)
                tmp[o++] = k[j++];
        }
        memcpy(k, tmp, n * sizeof(TradeKey));
    }
}

static int trade_events(Reader *r, const Frame *f, PyObject *list) {
    size_t n = f->events.n;
    if (n == 0)
        return 1;
    TradeKey inline_keys[2 * 64];
    TradeKey *keys = n <= 64 ? inline_keys : PyMem_Malloc(2 * n * sizeof(TradeKey));
    if (keys == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int rc = 1;
    const Text *last = NULL;
    PyObject *symbol = NULL;
    int ordered = 1;
    size_t held = 0; /* keys holding a reference to their symbol */
    for (size_t i = 0; i < n; i++) {
        const TradeRow *t = &ROW(f->events, TradeRow, i);
        if (last == NULL || last->n != t->product.n ||
            memcmp(last->s, t->product.s, (size_t)t->product.n) != 0) {
            symbol = symbol_for(r, &t->product);
            if (symbol == NULL) {
                rc = PyErr_Occurred() ? -1 : 0;
                goto done;
            }
            last = &t->product;
        } else {
            Py_INCREF(symbol);
        }
        keys[held++] = (TradeKey){symbol, t->id, i};
        ordered = ordered && (i == 0 || !trade_before(&keys[i], &keys[i - 1]));
    }
    if (!ordered)
        sort_trades(keys, keys + n, n);
    for (size_t i = 0; i < n; i++) {
        const TradeRow *t = &ROW(f->events, TradeRow, keys[i].row);
        PyObject *a[] = {Py_NewRef(keys[i].symbol),
                         INT(t->id),
                         FLT(t->price),
                         FLT(t->size),
                         Py_NewRef(t->maker_buys ? SELL : BUY),
                         INT(t->time),
                         INT(f->ts)};
        PyObject *trade = build(r->make[R_TRADE], a, 7);
        if (trade == NULL || PyList_Append(list, trade) < 0) {
            Py_XDECREF(trade);
            rc = -1;
            break;
        }
        Py_DECREF(trade);
    }
done:
    for (size_t i = 0; i < held; i++)
        Py_DECREF(keys[i].symbol);
    if (keys != inline_keys)
        PyMem_Free(keys);
    return rc;
}

/* ticker and ticker_batch: ticker_of's record (the open worked back from the change in
 * percent; what Coinbase does not say is NaN or -1) */
static int ticker_events(Reader *r, const Frame *f, PyObject *list) {
    for (size_t i = 0; i < f->events.n; i++) {
        const TickerRow *t = &ROW(f->events, TickerRow, i);
        PyObject *symbol = symbol_for(r, &t->product);
        if (symbol == NULL)
            return PyErr_Occurred() ? -1 : 0;
        const double *v = t->v, price = v[TK_PRICE], pct = v[TK_PCT];
        double open = NOT_A_NUMBER;
        if (isfinite(pct) && pct > -100.0) {
            double ratio = 1.0 + pct / 100.0;
            if (ratio == 0.0) { /* (cannot be: the Python decoder's) */
                Py_DECREF(symbol);
                return 0;
            }
            open = price / ratio;
        }
        PyObject *a[] = {symbol,
                         INT(f->ts),
                         FLT(price),
                         Py_NewRef(NAN_FLOAT),
                         number(v[TK_BID]),
                         number(v[TK_BID_QTY]),
                         number(v[TK_ASK]),
                         number(v[TK_ASK_QTY]),
                         number(open),
                         number(v[TK_HIGH]),
                         number(v[TK_LOW]),
                         number(v[TK_VOLUME]),
                         Py_NewRef(NAN_FLOAT),
                         number(price - open),
                         number(pct),
                         Py_NewRef(NAN_FLOAT),
                         Py_NewRef(NAN_FLOAT),
                         INT(f->ts - DAY_MS),
                         INT(f->ts),
                         INT(-1),
                         INT(-1),
                         INT(-1)};
        PyObject *ticker = build(r->make[R_TICKER], a, 22);
        if (ticker == NULL || PyList_Append(list, ticker) < 0) {
            Py_XDECREF(ticker);
            return -1;
        }
        Py_DECREF(ticker);
    }
    return 1;
}

static int beat_events(Reader *r, const Frame *f, PyObject *list) {
    for (size_t i = 0; i < f->events.n; i++) {
        const BeatRow *b = &ROW(f->events, BeatRow, i);
        PyObject *a[] = {INT(b->counter),
                         PyUnicode_DecodeASCII(b->current_time.s, b->current_time.n, "strict")};
        PyObject *beat = build(r->make[R_HEARTBEAT], a, 2);
        if (beat == NULL || PyList_Append(list, beat) < 0) {
            Py_XDECREF(beat);
            return -1;
        }
        Py_DECREF(beat);
    }
    return 1;
}

/* read(frame) -> Message | None */
static PyObject *Reader_read(Reader *r, PyObject *frame) {
    if (!PyBytes_CheckExact(frame))
        Py_RETURN_NONE;
    /* each kind's first rows on the stack: most frames fit */
    union {
        BookEvent book;
        TradeRow trade;
        TickerRow ticker;
        BeatRow beat;
    } events[32];
    Update updates[128];
    Frame f = {-1, 0, 0, {(char *)events, 0, 32, sizeof(events[0]), sizeof(events), 0},
               {(char *)updates, 0, 128, sizeof(Update), sizeof(updates), 0}};
    PyObject *result = NULL, *list = NULL;
    int rc;
    Py_INCREF(r); /* the makers are its own: held while they run */
    if (!read_frame(PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), &f)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    list = PyList_New(0);
    if (list == NULL)
        goto done;
    switch (f.channel) {
    case CH_L2:
        rc = book_events(r, &f, list);
        break;
    case CH_TRADES:
        rc = trade_events(r, &f, list);
        break;
    case CH_TICKER:
    case CH_TICKER_BATCH:
        rc = ticker_events(r, &f, list);
        break;
    default:
        rc = beat_events(r, &f, list);
    }
    if (rc <= 0) {
        Py_DECREF(list);
        result = rc == 0 ? Py_NewRef(Py_None) : NULL;
        goto done;
    }
    PyObject *a[] = {INT(f.seq), Py_NewRef(CHANNEL[f.channel]), list};
    result = build(r->make[R_MESSAGE], a, 3);
done:
    rows_free(&f.events);
    rows_free(&f.updates);
    Py_DECREF(r);
    return result;
}

static int Reader_traverse(Reader *r, visitproc visit, void *arg) {
    for (int i = 0; i < R_COUNT; i++)
        Py_VISIT(r->make[i]);
    Py_VISIT(r->symbol_of);
    return 0;
}

static int Reader_clear(Reader *r) {
    for (int i = 0; i < R_COUNT; i++)
        Py_CLEAR(r->make[i]);
    Py_CLEAR(r->symbol_of);
    products_clear(r);
    return 0;
}

static void Reader_dealloc(Reader *r) {
    PyObject_GC_UnTrack(r);
    Reader_clear(r);
    PyMem_Free(r->products);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *Reader_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *names[] = {"message", "book", "trade", "ticker", "heartbeat", "symbol_of", NULL};
    PyObject *given[R_COUNT + 1];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOO:CoinbaseReader", names, &given[0],
                                     &given[1], &given[2], &given[3], &given[4], &given[5]))
        return NULL;
    for (int i = 0; i <= R_COUNT; i++) {
        if (!PyCallable_Check(given[i])) {
            PyErr_Format(PyExc_TypeError, "CoinbaseReader: %s must be callable", names[i]);
            return NULL;
        }
    }
    Reader *r = (Reader *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    r->mask = 2 * PRODUCTS_KEPT - 1; /* at most half full */
    r->products = PyMem_Calloc(r->mask + 1, sizeof(ProductSlot));
    if (r->products == NULL) {
        Py_DECREF(r);
        return PyErr_NoMemory();
    }
    for (int i = 0; i < R_COUNT; i++)
        r->make[i] = Py_NewRef(given[i]);
    r->symbol_of = Py_NewRef(given[R_COUNT]);
    return (PyObject *)r;
}

static PyObject *Reader_len(Reader *r, PyObject *unused) {
    (void)unused;
    return PyLong_FromSize_t(r->held);
}

static PyMethodDef Reader_methods[] = {
    {"read", (PyCFunction)Reader_read, METH_O,
     "read(frame: bytes) -> Message | None: a frame of a hot channel as the Python decoder reads "
     "it; None for anything else or anything unusual (left to the Python decoder)"},
    {"products", (PyCFunction)Reader_len, METH_NOARGS, "how many product ids are named so far"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "marketlab._native.CoinbaseReader",
    .tp_basicsize = sizeof(Reader),
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)Reader_traverse,
    .tp_clear = (inquiry)Reader_clear,
    .tp_doc = "CoinbaseReader(message, book, trade, ticker, heartbeat, symbol_of): Coinbase "
              "frames of the hot channels to the decoder's Message (read); the records made by "
              "the makers given, with values in the order COINBASE_RECORDS names them",
    .tp_new = Reader_new,
    .tp_methods = Reader_methods,
};

int native_coinbase_init(PyObject *module) {
    classes_init();
    for (int ch = 0; ch < CH_COUNT; ch++)
        if ((CHANNEL[ch] = PyUnicode_InternFromString(CHANNEL_NAMES[ch])) == NULL)
            return -1;
    SNAPSHOT = PyUnicode_InternFromString("snapshot");
    UPDATE = PyUnicode_InternFromString("update");
    BUY = PyUnicode_InternFromString("buy");
    SELL = PyUnicode_InternFromString("sell");
    /* one NaN object for every value Coinbase does not give (a ticker's last size, quote
       volume, previous close...) */
    NOT_A_NUMBER = NAN;
    if ((NAN_FLOAT = PyFloat_FromDouble(NOT_A_NUMBER)) == NULL)
        return -1;
    if (SNAPSHOT == NULL || UPDATE == NULL || BUY == NULL || SELL == NULL ||
        PyType_Ready(&ReaderType) < 0 ||
        PyModule_AddObjectRef(module, "CoinbaseReader", (PyObject *)&ReaderType) < 0)
        return -1;
    /* COINBASE_RECORDS: {record: the names of its values, in its maker's order} */
    return module_add(module, "COINBASE_RECORDS",
                      values_by_record(RECORD_NAMES, VALUES, R_COUNT));
}
