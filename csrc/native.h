/* What the compiled module's source files share (csrc/native.c defines the module).
 *
 * The rule every file follows: compiled code is either a pure function over bytes and arrays
 * (a frame read into slots, a recording's entries cut out, a delta on a book's two sides) or a
 * type that owns its data (a book side, a trade ring, a lane table, a block of entries) and is
 * used through its methods. It never reads
 * or writes a Python object's attributes by name and never mirrors a Python layout: what it
 * makes, it makes by calling a `make` it was handed, with values in an order it declares
 * itself (the *_VALUES names it exports), checked by the Python side. */
#ifndef MARKETLAB_NATIVE_H
#define MARKETLAB_NATIVE_H
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* A payload's fields as read, by slot (a kline's body from BODY_SLOTS on, after its three
 * outer fields): an int64, a double's bits, a bool, a string's (offset << 24 | length) from the
 * frame's start, or a list of levels' (first << 24 | count) in a Levels buffer. A payload
 * fills the first few (MAX_SLOTS at most; a reader says how many). */
#define BODY_SLOTS 3
#define MAX_SLOTS 24
typedef struct {
    uint64_t v[MAX_SLOTS];
} Slots;

/* A span in a slot: (offset << 24 | length) */
#define SPAN(off, len) (((uint64_t)(off) << 24) | (uint64_t)(len))
#define SPAN_MAX ((1u << 24) - 1)
#define SPAN_AT(span) ((size_t)((span) >> 24))
#define SPAN_LEN(span) ((size_t)((span) & SPAN_MAX))

/* whether the string span of a frame (from `base`) holds what compact ASCII str `s` holds */
static inline int span_is(PyObject *s, const char *base, uint64_t span) {
    return PyUnicode_IS_COMPACT_ASCII(s) && (size_t)PyUnicode_GET_LENGTH(s) == SPAN_LEN(span) &&
           memcmp(PyUnicode_DATA(s), base + SPAN_AT(span), SPAN_LEN(span)) == 0;
}

/* a slot read as the int64 or the double it holds */
static inline int64_t I(const uint64_t *v, int i) { return (int64_t)v[i]; }

static inline double F(const uint64_t *v, int i) {
    double d;
    memcpy(&d, &v[i], sizeof(d));
    return d;
}

typedef struct {
    double *v; /* price, qty pairs (PyMem_Raw: grown without the GIL) */
    size_t n, cap;
    int borrowed; /* `v` is the caller's (e.g. on its stack): copied out, never freed, to grow */
} Levels;

/* A reader of a venue's frames in two steps: `read` without the GIL (1: read into the slots,
 * with the index of the frame's lane and how many slots it filled; 0: the frame goes the Python
 * way), `take` with it (the record made of those slots and handed to its lane's taker; -1 on
 * an error). `frozen`: set (with the GIL) once a thread may read without the GIL; the reader's
 * tables change no more from then on. */
typedef struct FrameReader {
    PyObject_HEAD
    int (*read)(struct FrameReader *r, const char *frame, Py_ssize_t n, Slots *out, Levels *lv,
                int32_t *lane, int *filled);
    int (*take)(struct FrameReader *r, int32_t lane, const char *frame, const uint64_t *slots,
                const Levels *lv);
    int frozen;
} FrameReader;

/* A recording entry's head (recording/files.py's _ENTRY: "<BqHI", little-endian as written,
 * read so on any host): 1 when the whole entry lies within `size` bytes from `pos`. */
#define ENTRY_HEAD 15
typedef struct {
    unsigned kind;
    int64_t time_ns;
    uint16_t tag_len;
    uint32_t data_len;
} EntryHead;

static inline uint64_t little_endian(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline int entry_head(const unsigned char *data, Py_ssize_t size, Py_ssize_t pos,
                             EntryHead *e) {
    if (size - pos < ENTRY_HEAD)
        return 0;
    const unsigned char *h = data + pos;
    e->kind = h[0];
    e->time_ns = (int64_t)little_endian(h + 1, 8);
    e->tag_len = (uint16_t)little_endian(h + 9, 2);
    e->data_len = (uint32_t)little_endian(h + 11, 4);
    return size - pos - ENTRY_HEAD >= (Py_ssize_t)e->tag_len + (Py_ssize_t)e->data_len;
}

/* PyModule_Add (Python 3.13's): `value` (a new reference, or NULL on an error) added as
 * `name`, and let go of; -1 on an error. */
static inline int module_add(PyObject *module, const char *name, PyObject *value) {
    int rc = value == NULL ? -1 : PyModule_AddObjectRef(module, name, value);
    Py_XDECREF(value);
    return rc;
}

/* csrc/native.c: an entry made by `make((kind, time_ns, tag, data))`, the values in the order
 * of ENTRY_VALUES (the Python side hands a `make` that takes them so); `tag` is stolen. */
#define ENTRY_VALUES_NAMES "kind", "time_ns", "tag", "data"
PyObject *make_entry(PyObject *make, unsigned kind, int64_t time_ns, PyObject *tag,
                     const char *data, Py_ssize_t n);

/* Whether `n` bytes are UTF-8 as Python's strict decoder takes it (no overlong forms, no
 * surrogates, nothing past U+10FFFF): a recording's tag that is not is damage, named alike by
 * every reader, and found without the GIL. */
static inline int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                                             : c >= 0xF0 && c <= 0xF4 ? 4
                                                                      : 0;
        if (len == 0 || n - i < len)
            return 0;
        unsigned char c1 = s[i + 1];
        unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
        if (c == 0xE0)
            lo = 0xA0; /* no overlong */
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
        else if (c == 0xF0)
            lo = 0x90; /* no overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* nothing past U+10FFFF */
        if (c1 < lo || c1 > hi)
            return 0;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

/* csrc/inflow.c: a recording's blocks made by a thread that runs no Python */
PyObject *zstd_load(PyObject *self, PyObject *unused);
int native_inflow_init(PyObject *module);

/* csrc/binance.c: Binance combined frames */
extern PyTypeObject LaneTableType;
PyObject *take_combined(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int native_binance_init(PyObject *module);

/* csrc/coinbase.c: Coinbase messages of the hot channels (CoinbaseReader) */
int native_coinbase_init(PyObject *module);

/* csrc/bybit.c: Bybit spot pushes (BybitTopics) */
int native_bybit_init(PyObject *module);

/* csrc/okx.c: OKX pushes of the hot channels */
int native_okx_init(PyObject *module);

/* csrc/blocks.c: a recording's blocks of entries, read ahead. A block's plain part, made
 * without the GIL (block_scan, block_data_free) and then wrapped as a Block (block_wrap, which
 * takes its memory over). */
typedef struct {
    int64_t time_ns;
    Py_ssize_t tag_off, data_off;
    uint32_t data_len;
    uint16_t tag_len;
    uint8_t kind;
    int32_t lane; /* the frame's lane when it was read, else -1 */
    int32_t slot; /* where its slots begin in the block's words */
} BlockEntry;

typedef struct {
    char *data; /* the entries' bytes (PyMem_Raw), `size` of them */
    Py_ssize_t size;
    BlockEntry *entries;
    Py_ssize_t n, cap;
    uint64_t *words; /* the frames' slots, each frame's as many as it filled */
    Py_ssize_t nwords, words_cap, nread;
    Levels levels;
    Py_ssize_t end; /* where the last whole entry ends */
    int bad;        /* scanning stopped at an entry of a kind not in `kinds` */
} BlockData;

/* `b->data` cut into entries (as far as whole ones go) and every frame `reader` knows read into
 * slots; 1, or 0 when memory ran out */
int block_scan(BlockData *b, FrameReader *reader, const unsigned char *kinds, unsigned ws_kind);
void block_data_free(BlockData *d);
PyObject *block_wrap(BlockData *d, PyObject *reader);
PyObject *read_block(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int native_blocks_init(PyObject *module);

/* csrc/rings.c: a symbol's recent trades (TradeRing) */
int native_rings_init(PyObject *module);

#endif
