/* A recording's entries a block at a time, read ahead of the collector.
 *
 * Block: a type that owns a block's bytes, its entries and the slots of its frames.
 *
 * read_block(reader, rest, more, kinds, ws_kind) -> Block
 *   Cuts the decompressed bytes `rest + more` into entries (the format of recording/files.py)
 *   and has `reader` (a FrameReader, e.g. a LaneTable) read every frame it knows into slots,
 *   all without the GIL: on the read-ahead thread this overlaps the collector's work. `kinds`
 *   is 256 bytes, non-zero for a kind that may stand in a recording; scanning stops before an
 *   entry of any other kind, or whose tag is not UTF-8 (`bad`, the caller names the damage) or one cut by the block's end
 *   (`rest`: the bytes after the last whole entry, for the next block).
 * Block.run(limit, make, tags, on_entry, on_tag, clock, due) -> (done, counts, finished)
 *   On the collector's thread: up to `limit` entries in order, each told to `clock(time_ns)`
 *   first (unless None; where `due` is not None, `due()` is the recorded time before which
 *   the clock has nothing to do, asked again after each time it is told: it is told only from
 *   then on, as it would have ignored the rest); a frame read goes to its lane's taker, any
 *   other entry to `on_entry(make((kind, time_ns, tag, data)))` as scan_entries gives it.
 *   `on_tag(tag)` is told of a connection's first frame taken here (before it is taken);
 *   `counts` are (tag, frames taken) since the last run. The twin is the Python loop of
 *   stream/replay.py over recording/files.py's entries (one by one through on_frame).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "native.h"

#define MAX_TAGS 16

typedef struct {
    PyObject_HEAD
    BlockData d;
    PyObject *reader;
    Py_ssize_t next;
    int ntags;
    PyObject *tag[MAX_TAGS]; /* a connection's name as str */
    Py_ssize_t tag_off[MAX_TAGS], taken[MAX_TAGS];
    uint16_t tag_len[MAX_TAGS];
} Block;

static PyTypeObject BlockType;

void block_data_free(BlockData *d) {
    PyMem_RawFree(d->data);
    PyMem_RawFree(d->entries);
    PyMem_RawFree(d->words);
    PyMem_RawFree(d->levels.v);
    memset(d, 0, sizeof(*d));
}

static void Block_dealloc(Block *b) {
    for (int i = 0; i < b->ntags; i++)
        Py_XDECREF(b->tag[i]);
    block_data_free(&b->d);
    Py_XDECREF(b->reader);
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static int grow(void **p, Py_ssize_t *cap, Py_ssize_t need, size_t size) {
    if (need <= *cap)
        return 1;
    Py_ssize_t cap2 = *cap ? *cap : 1024;
    while (cap2 < need)
        cap2 *= 2;
    void *q = PyMem_RawRealloc(*p, (size_t)cap2 * size); /* no GIL needed */
    if (q == NULL)
        return 0;
    *p = q;
    *cap = cap2;
    return 1;
}

int block_scan(BlockData *b, FrameReader *reader, const unsigned char *kinds, unsigned ws_kind) {
    const char *data = b->data;
    Py_ssize_t size = b->size, pos = 0;
    EntryHead head;
    while (entry_head((const unsigned char *)data, size, pos, &head)) {
        Py_ssize_t start = pos + ENTRY_HEAD;
        uint16_t tag_len = head.tag_len;
        uint32_t data_len = head.data_len;
        if (!kinds[head.kind] || !utf8_valid((const unsigned char *)data + start, tag_len)) {
            b->bad = 1; /* named by the caller, as every reader names it */
            break;
        }
        if (!grow((void **)&b->entries, &b->cap, b->n + 1, sizeof(BlockEntry)))
            return 0;
        BlockEntry *e = &b->entries[b->n++];
        e->time_ns = head.time_ns;
        e->kind = (uint8_t)head.kind;
        e->tag_off = start;
        e->tag_len = tag_len;
        e->data_off = start + tag_len;
        e->data_len = data_len;
        e->lane = -1;
        if (head.kind == ws_kind) {
            Slots read;
            int32_t lane;
            int filled;
            if (reader->read(reader, data + e->data_off, data_len, &read, &b->levels, &lane,
                             &filled)) {
                if (!grow((void **)&b->words, &b->words_cap, b->nwords + filled,
                          sizeof(uint64_t)))
                    return 0;
                memcpy(b->words + b->nwords, read.v, (size_t)filled * sizeof(uint64_t));
                e->lane = lane;
                e->slot = (int32_t)b->nwords;
                b->nwords += filled;
                b->nread++;
            }
        }
        pos = start + tag_len + data_len;
    }
    b->end = pos;
    return 1;
}

PyObject *block_wrap(BlockData *d, PyObject *reader) {
    Block *b = PyObject_New(Block, &BlockType);
    if (b == NULL) {
        block_data_free(d);
        return NULL;
    }
    memset((char *)b + sizeof(PyObject), 0, sizeof(Block) - sizeof(PyObject));
    b->d = *d; /* its memory is the block's now */
    memset(d, 0, sizeof(*d));
    b->reader = Py_NewRef(reader);
    return (PyObject *)b;
}

PyObject *read_block(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "read_block(reader, rest, more, kinds, ws_kind)");
        return NULL;
    }
    PyObject *reader = args[0], *rest = args[1], *more = args[2], *kinds = args[3];
    if (!PyObject_TypeCheck(reader, &LaneTableType) || !PyBytes_CheckExact(rest) ||
        !PyBytes_CheckExact(more) || !PyBytes_CheckExact(kinds) ||
        PyBytes_GET_SIZE(kinds) != 256) {
        PyErr_SetString(PyExc_TypeError,
                        "read_block: a LaneTable, bytes, bytes, 256 bytes of kinds, a kind");
        return NULL;
    }
    long ws_kind = PyLong_AsLong(args[4]);
    if (ws_kind == -1 && PyErr_Occurred())
        return NULL;
    ((FrameReader *)reader)->frozen = 1; /* read below without the GIL */
    Py_ssize_t n_rest = PyBytes_GET_SIZE(rest), size = n_rest + PyBytes_GET_SIZE(more);
    BlockData d;
    memset(&d, 0, sizeof(d));
    d.size = size;
    d.data = PyMem_RawMalloc(size ? (size_t)size : 1); /* filled below, without the GIL */
    if (d.data == NULL)
        return PyErr_NoMemory();
    const char *a = PyBytes_AS_STRING(rest), *m = PyBytes_AS_STRING(more);
    const unsigned char *kind_ok = (const unsigned char *)PyBytes_AS_STRING(kinds);
    int ok;
    Py_BEGIN_ALLOW_THREADS; /* the buffer is this block's alone until it is returned; the other
                               bytes are immutable and held by the caller; the reader's table
                               never changes */
    memcpy(d.data, a, n_rest);
    memcpy(d.data + n_rest, m, size - n_rest);
    ok = block_scan(&d, (FrameReader *)reader, kind_ok, (unsigned)ws_kind);
    Py_END_ALLOW_THREADS;
    if (!ok) {
        block_data_free(&d);
        return PyErr_NoMemory();
    }
    return block_wrap(&d, reader);
}

/* The str of an entry's tag, from the `tags` cache (bytes → str). */
static PyObject *tag_of(PyObject *tags, const char *s, Py_ssize_t n) {
    PyObject *raw = PyBytes_FromStringAndSize(s, n);
    if (raw == NULL)
        return NULL;
    PyObject *tag = PyDict_GetItemWithError(tags, raw);
    if (tag != NULL) {
        Py_INCREF(tag);
    } else if (!PyErr_Occurred()) {
        tag = PyUnicode_DecodeUTF8(s, n, "strict");
        if (tag != NULL && PyDict_GET_SIZE(tags) < 4096 && PyDict_SetItem(tags, raw, tag) < 0)
            Py_CLEAR(tag);
    }
    Py_DECREF(raw);
    return tag;
}

/* The index of a taken frame's tag among the block's, told to on_tag when new; -1 when there
 * are too many to count here (the entry then goes the Python way), -2 on an error. */
static int tag_index(Block *b, const BlockEntry *e, PyObject *tags, PyObject *on_tag) {
    const char *data = b->d.data;
    for (int i = 0; i < b->ntags; i++)
        if (b->tag_len[i] == e->tag_len &&
            memcmp(data + b->tag_off[i], data + e->tag_off, e->tag_len) == 0)
            return i;
    if (b->ntags == MAX_TAGS)
        return -1;
    PyObject *tag = tag_of(tags, data + e->tag_off, e->tag_len);
    if (tag == NULL)
        return -2;
    PyObject *r = PyObject_CallOneArg(on_tag, tag);
    if (r == NULL) {
        Py_DECREF(tag);
        return -2;
    }
    Py_DECREF(r);
    int i = b->ntags++;
    b->tag[i] = tag;
    b->tag_off[i] = e->tag_off;
    b->tag_len[i] = e->tag_len;
    b->taken[i] = 0;
    return i;
}

static int give_entry(Block *b, const BlockEntry *e, PyObject *make, PyObject *tags,
                      PyObject *on_entry) {
    const char *data = b->d.data;
    PyObject *tag = tag_of(tags, data + e->tag_off, e->tag_len);
    PyObject *entry = tag == NULL ? NULL
                                  : make_entry(make, e->kind, e->time_ns, tag,
                                               data + e->data_off, e->data_len);
    if (entry == NULL)
        return -1;
    PyObject *r = PyObject_CallOneArg(on_entry, entry);
    Py_DECREF(entry);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* `due()`: the recorded time (ns) before which the clock has nothing to do. */
static int clock_due(PyObject *due_of, int64_t *due) {
    PyObject *d = PyObject_CallNoArgs(due_of);
    if (d == NULL)
        return -1;
    *due = PyLong_AsLongLong(d);
    Py_DECREF(d);
    return (*due == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *Block_run(Block *b, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "run(limit, make, tags, on_entry, on_tag, clock, due)");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[0]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    PyObject *make = args[1], *tags = args[2], *on_entry = args[3], *on_tag = args[4];
    PyObject *clock = args[5] == Py_None ? NULL : args[5];
    PyObject *due_of = args[6] == Py_None ? NULL : args[6];
    if (!PyCallable_Check(make) || !PyDict_CheckExact(tags)) {
        PyErr_SetString(PyExc_TypeError, "make must be callable and tags a dict");
        return NULL;
    }
    FrameReader *reader = (FrameReader *)b->reader;
    const char *data = b->d.data;
    Py_ssize_t done = 0;
    int64_t due = 0;
    int has_due = clock != NULL && due_of != NULL;
    if (has_due && clock_due(due_of, &due) < 0)
        return NULL;
    while (b->next < b->d.n && done < limit) {
        const BlockEntry *e = &b->d.entries[b->next++];
        done++;
        if (clock != NULL && (!has_due || e->time_ns >= due)) {
            PyObject *t = PyLong_FromLongLong(e->time_ns);
            PyObject *r = t ? PyObject_CallOneArg(clock, t) : NULL;
            Py_XDECREF(t);
            if (r == NULL || (has_due && clock_due(due_of, &due) < 0)) {
                Py_XDECREF(r);
                return NULL;
            }
            Py_DECREF(r);
        }
        int ti = e->lane >= 0 ? tag_index(b, e, tags, on_tag) : -1;
        if (ti == -2)
            return NULL;
        if (ti >= 0) {
            b->taken[ti]++;
            if (reader->take(reader, e->lane, data + e->data_off, b->d.words + e->slot,
                             &b->d.levels) < 0)
                return NULL;
        } else if (give_entry(b, e, make, tags, on_entry) < 0) {
            return NULL;
        }
    }
    PyObject *counts = PyList_New(0);
    if (counts == NULL)
        return NULL;
    for (int i = 0; i < b->ntags; i++) {
        if (b->taken[i] == 0)
            continue;
        PyObject *pair = Py_BuildValue("(On)", b->tag[i], b->taken[i]);
        if (pair == NULL || PyList_Append(counts, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(counts);
            return NULL;
        }
        Py_DECREF(pair);
        b->taken[i] = 0;
    }
    return Py_BuildValue("(nNO)", done, counts, b->next >= b->d.n ? Py_True : Py_False);
}

static PyObject *Block_get_count(Block *b, void *unused) { return PyLong_FromSsize_t(b->d.n); }
static PyObject *Block_get_end(Block *b, void *unused) { return PyLong_FromSsize_t(b->d.end); }
static PyObject *Block_get_bad(Block *b, void *unused) { return PyBool_FromLong(b->d.bad); }
static PyObject *Block_get_read(Block *b, void *unused) { return PyLong_FromSsize_t(b->d.nread); }
static PyObject *Block_get_rest(Block *b, void *unused) {
    return PyBytes_FromStringAndSize(b->d.data + b->d.end, b->d.size - b->d.end);
}

static PyMethodDef Block_methods[] = {
    {"run", (PyCFunction)(void (*)(void))Block_run, METH_FASTCALL,
     "run(limit, make, tags, on_entry, on_tag, clock, due) -> (done, counts, finished)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Block_getset[] = {
    {"count", (getter)Block_get_count, NULL, "entries in the block", NULL},
    {"end", (getter)Block_get_end, NULL, "where the last whole entry ends in the buffer", NULL},
    {"bad", (getter)Block_get_bad, NULL, "scanning stopped at an entry of an unknown kind", NULL},
    {"read", (getter)Block_get_read, NULL, "frames read ahead", NULL},
    {"rest", (getter)Block_get_rest, NULL, "the bytes after the last whole entry", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "marketlab._native.Block",
    .tp_basicsize = sizeof(Block),
    .tp_dealloc = (destructor)Block_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A block of a recording's entries, its frames read ahead (see read_block).",
    .tp_methods = Block_methods,
    .tp_getset = Block_getset,
};

int native_blocks_init(PyObject *module) { return PyType_Ready(&BlockType); }
