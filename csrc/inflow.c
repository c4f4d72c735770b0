/* A recording's blocks made by a thread that never runs Python: it decompresses the mapped file
 * (libzstd, loaded at run time), cuts the entries and reads the frames into a block's plain
 * part, and hands finished blocks over through a queue of two. A Python thread doing the same
 * took the GIL back after every decompression and every block, and each time waited its turn
 * (up to the 5 ms switch interval) behind the collector: on a busy collector the blocks came
 * late. This one only ever waits for room in the queue.
 *
 * zstd_load() -> str | None: the system's libzstd, by soname (only the system's: the dynamic
 *   loader's own search, no path from anywhere else, never a library out of a Python package),
 *   loaded once for the process: the soname, or None where there is none.
 * Unzstd(): the same decompression for Python's readers of a recording, so that every reader
 *   decodes with one library in the same steps and names damage alike: step(chunk) -> bytes
 *   decompresses one step of compressed bytes whole (nothing of a step that fails is given;
 *   ValueError "zstd decompress error: ..."), `after` says bytes followed the frame's end.
 *
 * Steps: the compressed file is decompressed STEP bytes at a time from its start, each step
 * whole or not at all. Where damage is found thus does not depend on how much a reader asks
 * for at once (libzstd gives nothing of a call that fails), and every reader gives exactly the
 * entries that lie in the steps before the damaged one.
 * Inflow(reader, source, skip, kinds, ws_kind): `source` is the compressed recording (any
 *   buffer, e.g. an mmap, held until close), `skip` the decompressed bytes before the first
 *   entry (the header). Iterating gives Blocks (see csrc/blocks.c), in the file's order;
 *   when it ends, `entries` counts what was given, and `error` (libzstd's word for damage),
 *   `bad` (an entry of no known kind) or `cut` (bytes after the last whole entry) say why it
 *   ended early. close() stops and joins the thread and lets go of the source.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "native.h"

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* libzstd's stable ABI, declared here as zstd.h declares it (a fresh machine has the library
 * but not its headers): the streaming decompression of its stable public API only (no
 * ZSTD_STATIC_LINKING_ONLY part), unchanged since v1.0. The library is found at run time. */
typedef struct ZSTD_DCtx_s ZSTD_DStream;
typedef struct ZSTD_inBuffer_s {
    const void *src;
    size_t size, pos;
} ZSTD_inBuffer;
typedef struct ZSTD_outBuffer_s {
    void *dst;
    size_t size, pos;
} ZSTD_outBuffer;
static struct {
    ZSTD_DStream *(*createDStream)(void);
    size_t (*freeDStream)(ZSTD_DStream *);
    size_t (*initDStream)(ZSTD_DStream *);
    size_t (*decompressStream)(ZSTD_DStream *, ZSTD_outBuffer *, ZSTD_inBuffer *);
    unsigned (*isError)(size_t);
    const char *(*getErrorName)(size_t);
} Z;
/* where the system keeps it, by soname: Linux and the BSDs, then macOS */
static const char *const ZSTD_SONAMES[] = {"libzstd.so.1", "libzstd.1.dylib", "libzstd.dylib",
                                           NULL};
static PyObject *Z_PATH; /* the soname of the library loaded, or NULL */

#define STEP (1 << 17) /* compressed bytes decompressed whole at a time (files.py: _STEP) */
#define ROOM (1 << 17) /* free output space asked of libzstd per call, at least */
/* A step that decompresses to more than this is damage (or a bomb): market data compresses
 * some tenfold, so a step gives a few megabytes; recording/files.py's Python stepper has the same. */
#define STEP_OUT_BYTES 268435456 /* 256 MiB */
#define STEP_OUT_MAX ((size_t)STEP_OUT_BYTES)
#define TEXT_(x) #x
#define TEXT(x) TEXT_(x)
#define TOO_LARGE \
    "a step of the compressed stream decompresses to more than " TEXT(STEP_OUT_BYTES) " bytes"

typedef struct {
    ZSTD_DStream *ds;
    int ended; /* the frame ended: any byte after it is damage */
    int after; /* bytes came after the frame's end */
} Unz;

/* `n` compressed bytes decompressed whole, appended to `*out` (`*size` used of `*cap`, grown
 * with PyMem_Raw: no GIL needed). 0: done (`u->after` tells of bytes past the frame's end,
 * what came before them appended); -1: damage, nothing of this step appended, `*error` says
 * what; -2: no memory. */
static int unz_step(Unz *u, const char *in, size_t n, char **out, size_t *size, size_t *cap,
                    const char **error) {
    size_t committed = *size;
    ZSTD_inBuffer ib = {in, n, 0};
    if (u->ended) {
        u->after = n > 0;
        return 0;
    }
    for (;;) {
        if (*cap - *size < ROOM) {
            size_t grown = *cap ? *cap : ROOM;
            while (grown - *size < ROOM)
                grown *= 2;
            char *p = PyMem_RawRealloc(*out, grown);
            if (p == NULL) {
                *size = committed;
                return -2;
            }
            *out = p;
            *cap = grown;
        }
        size_t room = *cap - *size, left = STEP_OUT_MAX + 1 - (*size - committed);
        ZSTD_outBuffer ob = {*out + *size, room < left ? room : left, 0};
        size_t r = Z.decompressStream(u->ds, &ob, &ib);
        if (Z.isError(r)) {
            *size = committed;
            *error = Z.getErrorName(r);
            return -1;
        }
        *size += ob.pos;
        if (*size - committed > STEP_OUT_MAX) {
            *size = committed;
            *error = TOO_LARGE;
            return -1;
        }
        if (r == 0) { /* the frame is whole: nothing may follow it */
            u->ended = 1;
            u->after = ib.pos < ib.size;
            return 0;
        }
        if (ib.pos == ib.size && ob.pos < ob.size)
            return 0; /* every byte in, every byte out */
    }
}

static int unz_init(Unz *u) {
    memset(u, 0, sizeof(*u));
    u->ds = Z.createDStream();
    if (u->ds == NULL)
        return -2;
    return Z.isError(Z.initDStream(u->ds)) ? -1 : 0;
}

static void unz_free(Unz *u) {
    if (u->ds != NULL)
        Z.freeDStream(u->ds);
    u->ds = NULL;
}

#define AFTER_END "bytes after the end of the compressed stream"

#define FIRST_PIECE (1 << 16) /* the first entries come at once ... */
#define PIECE (1 << 21)       /* ... then two megabytes a block */
#define DEPTH 2               /* blocks made ahead */

typedef struct {
    PyObject_HEAD
    PyObject *reader, *source;
    Py_buffer view;
    int have_view;
    const unsigned char *kinds; /* 256 bytes, held in `kinds_obj` */
    PyObject *kinds_obj;
    unsigned ws_kind;
    Py_ssize_t skip;
    pthread_t thread;
    int started, joined;
    pthread_mutex_t mu;
    pthread_cond_t changed;
    BlockData *queue[DEPTH];
    int head, count;
    int done, stop; /* the thread ended / is asked to */
    Py_ssize_t given;  /* entries in blocks given (the collector's side) */
    Py_ssize_t cut;    /* bytes left after the last whole entry at the end */
    int bad, nomem;
    char error[128];
} Inflow;

static void inflow_finish(Inflow *f, const char *error, int nomem) {
    pthread_mutex_lock(&f->mu);
    if (error != NULL)
        snprintf(f->error, sizeof(f->error), "%s", error);
    f->nomem = nomem;
    f->done = 1;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->mu);
}

/* a finished block into the queue, waiting for room; 0 when asked to stop */
static int inflow_put(Inflow *f, BlockData *d) {
    pthread_mutex_lock(&f->mu);
    while (f->count == DEPTH && !f->stop)
        pthread_cond_wait(&f->changed, &f->mu);
    int ok = !f->stop;
    if (ok) {
        f->queue[(f->head + f->count) % DEPTH] = d;
        f->count++;
        pthread_cond_broadcast(&f->changed);
    }
    pthread_mutex_unlock(&f->mu);
    return ok;
}

static int stopping(Inflow *f) {
    pthread_mutex_lock(&f->mu);
    int stop = f->stop;
    pthread_mutex_unlock(&f->mu);
    return stop;
}

/* Read pages of the mapped file out of this process's memory (read once, never again). */
static void drop_pages(const char *base, size_t *dropped, size_t upto) {
    long page = sysconf(_SC_PAGESIZE);
    size_t end = upto - upto % (size_t)page;
    uintptr_t start = (uintptr_t)base + *dropped;
    if (end > *dropped && start % (uintptr_t)page == 0) {
        madvise((void *)start, end - *dropped, MADV_DONTNEED);
        *dropped = end;
    }
}

#define THREAD_NAME "ml-readahead" /* as the system shows it (15 characters at most) */

static void *inflow_run(void *arg) {
    Inflow *f = arg;
#ifdef __linux__
    prctl(PR_SET_NAME, THREAD_NAME, 0, 0, 0);
#endif
    Unz u;
    BlockData d;
    memset(&d, 0, sizeof(d));
    char *rest = NULL;
    const char *error = NULL;
    int nomem = 0, rc = unz_init(&u);
    size_t rest_n = 0, piece = FIRST_PIECE, dropped = 0, skip = (size_t)f->skip;
    const char *src = f->view.buf;
    size_t src_n = (size_t)f->view.len, pos = 0;
    if (rc == -2)
        goto out_of_memory;
    if (rc < 0) {
        error = "decompressor not set up";
        goto end;
    }
    /* `cut` and `bad` are written before inflow_finish, so the collector, which reads them
       once it sees `done` under the lock, sees them too */
    while (!stopping(f)) {
        /* at least as much again as is carried: an entry longer than a piece (or a damaged
           length) is then copied a few times in all, not once for every piece */
        size_t want = rest_n > piece ? rest_n : piece, size = rest_n, cap = rest_n + want;
        d.data = PyMem_RawMalloc(cap);
        if (d.data == NULL)
            goto out_of_memory;
        if (rest_n)
            memcpy(d.data, rest, rest_n);
        while (size - rest_n < want && pos < src_n && error == NULL) {
            size_t n = src_n - pos < STEP ? src_n - pos : STEP;
            rc = unz_step(&u, src + pos, n, &d.data, &size, &cap, &error);
            pos += n;
            if (rc == -2)
                goto out_of_memory;
            if (rc == 0 && u.after)
                error = AFTER_END; /* named after what came before it */
            if (skip && size > rest_n) { /* the header, read already */
                size_t k = skip < size - rest_n ? skip : size - rest_n;
                if (size - rest_n > k)
                    memmove(d.data + rest_n, d.data + rest_n + k, size - rest_n - k);
                size -= k;
                skip -= k;
            }
        }
        drop_pages(src, &dropped, pos);
        d.size = (Py_ssize_t)size;
        if (size == rest_n) { /* nothing more: whatever is left is cut short (or damaged) */
            if (error == NULL)
                f->cut = (Py_ssize_t)rest_n;
            goto end;
        }
        if (piece < PIECE)
            piece *= 2;
        if (!block_scan(&d, (FrameReader *)f->reader, f->kinds, f->ws_kind))
            goto out_of_memory;
        size_t left = (size_t)(d.size - d.end);
        char *carry = PyMem_RawMalloc(left ? left : 1);
        if (carry == NULL)
            goto out_of_memory;
        if (left)
            memcpy(carry, d.data + d.end, left);
        PyMem_RawFree(rest);
        rest = carry;
        rest_n = left;
        int bad = d.bad;
        if (d.n == 0) {
            block_data_free(&d); /* an entry longer than the piece: carried on */
        } else {
            BlockData *q = PyMem_RawMalloc(sizeof(BlockData));
            if (q == NULL)
                goto out_of_memory;
            *q = d; /* the queue's now */
            memset(&d, 0, sizeof(d));
            if (!inflow_put(f, q)) {
                block_data_free(q);
                PyMem_RawFree(q);
                break;
            }
        }
        if (bad) { /* named before any damage further on, as the other readers name it */
            f->bad = 1;
            error = NULL;
            goto end;
        }
        if (error != NULL)
            goto end;
    }
    goto end;
out_of_memory:
    nomem = 1;
end:
    block_data_free(&d);
    PyMem_RawFree(rest);
    unz_free(&u);
    inflow_finish(f, error, nomem);
    return NULL;
}

static PyObject *Inflow_next(Inflow *f) {
    BlockData *d = NULL;
    int ended = 0;
    Py_BEGIN_ALLOW_THREADS;
    pthread_mutex_lock(&f->mu);
    while (f->count == 0 && !f->done)
        pthread_cond_wait(&f->changed, &f->mu);
    if (f->count) {
        d = f->queue[f->head];
        f->head = (f->head + 1) % DEPTH;
        f->count--;
        pthread_cond_broadcast(&f->changed);
    } else {
        ended = 1;
    }
    pthread_mutex_unlock(&f->mu);
    Py_END_ALLOW_THREADS;
    if (ended) {
        if (f->nomem)
            return PyErr_NoMemory();
        return NULL; /* StopIteration: `error`, `bad` and `cut` say why */
    }
    f->given += d->n;
    PyObject *block = block_wrap(d, f->reader);
    PyMem_RawFree(d);
    return block;
}

static void inflow_stop(Inflow *f) {
    if (f->started && !f->joined) {
        pthread_mutex_lock(&f->mu);
        f->stop = 1;
        pthread_cond_broadcast(&f->changed);
        pthread_mutex_unlock(&f->mu);
        Py_BEGIN_ALLOW_THREADS;
        pthread_join(f->thread, NULL);
        Py_END_ALLOW_THREADS;
        f->joined = 1;
        pthread_mutex_lock(&f->mu); /* another thread may be in next(), the GIL let go */
        for (; f->count; f->count--, f->head = (f->head + 1) % DEPTH) {
            block_data_free(f->queue[f->head]);
            PyMem_RawFree(f->queue[f->head]);
        }
        pthread_mutex_unlock(&f->mu);
    }
    if (f->have_view) {
        PyBuffer_Release(&f->view);
        f->have_view = 0;
    }
}

static PyObject *Inflow_close(Inflow *f, PyObject *unused) {
    inflow_stop(f);
    Py_RETURN_NONE;
}

static void Inflow_dealloc(Inflow *f) {
    inflow_stop(f);
    if (f->started) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->changed);
    }
    Py_XDECREF(f->reader);
    Py_XDECREF(f->source);
    Py_XDECREF(f->kinds_obj);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyObject *Inflow_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *reader, *source, *kinds;
    Py_ssize_t skip;
    unsigned int ws_kind;
    if (!PyArg_ParseTuple(args, "O!OnO!I:Inflow", &LaneTableType, &reader, &source, &skip,
                          &PyBytes_Type, &kinds, &ws_kind))
        return NULL;
    if (Z_PATH == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no libzstd loaded (zstd_load)");
        return NULL;
    }
    if (PyBytes_GET_SIZE(kinds) != 256 || skip < 0) {
        PyErr_SetString(PyExc_ValueError, "kinds is 256 bytes and skip not negative");
        return NULL;
    }
    Inflow *f = (Inflow *)type->tp_alloc(type, 0);
    if (f == NULL)
        return NULL;
    ((FrameReader *)reader)->frozen = 1; /* read by the thread, without the GIL */
    f->reader = Py_NewRef(reader);
    f->source = Py_NewRef(source);
    f->kinds_obj = Py_NewRef(kinds);
    f->kinds = (const unsigned char *)PyBytes_AS_STRING(kinds);
    f->ws_kind = ws_kind;
    f->skip = skip;
    if (PyObject_GetBuffer(source, &f->view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(f);
        return NULL;
    }
    f->have_view = 1;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->changed, NULL);
    if (pthread_create(&f->thread, NULL, inflow_run, f) != 0) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->changed);
        Py_DECREF(f);
        PyErr_SetString(PyExc_RuntimeError, "could not start the read-ahead thread");
        return NULL;
    }
    f->started = 1;
    return (PyObject *)f;
}

static PyObject *Inflow_get_error(Inflow *f, void *unused) {
    return PyUnicode_FromString(f->error);
}
static PyObject *Inflow_get_bad(Inflow *f, void *unused) { return PyBool_FromLong(f->bad); }
static PyObject *Inflow_get_cut(Inflow *f, void *unused) { return PyLong_FromSsize_t(f->cut); }
static PyObject *Inflow_get_entries(Inflow *f, void *unused) {
    return PyLong_FromSsize_t(f->given);
}

static PyMethodDef Inflow_methods[] = {
    {"close", (PyCFunction)Inflow_close, METH_NOARGS, "stop the thread, let go of the source"},
    {NULL, NULL, 0, NULL},
};

/* read once the thread has ended (the iteration stopped) */
static PyGetSetDef Inflow_getset[] = {
    {"error", (getter)Inflow_get_error, NULL, "libzstd's word for damage, or ''", NULL},
    {"bad", (getter)Inflow_get_bad, NULL, "it stopped at an entry of no known kind", NULL},
    {"cut", (getter)Inflow_get_cut, NULL, "bytes after the last whole entry at the end", NULL},
    {"entries", (getter)Inflow_get_entries, NULL, "entries in the blocks given", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject InflowType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "marketlab._native.Inflow",
    .tp_basicsize = sizeof(Inflow),
    .tp_dealloc = (destructor)Inflow_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Inflow(reader, source, skip, kinds, ws_kind): a recording's blocks, made by a "
              "thread that runs no Python.",
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Inflow_next,
    .tp_methods = Inflow_methods,
    .tp_getset = Inflow_getset,
    .tp_new = Inflow_new,
};

/* --- Unzstd: the same steps for Python's readers ------------------------------------------ */

typedef struct {
    PyObject_HEAD
    Unz u;
    int busy; /* a step is under way (without the GIL): another thread's step is refused */
} Unzstd;

static PyObject *Unzstd_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "Unzstd() takes no arguments");
        return NULL;
    }
    if (Z_PATH == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no libzstd loaded (zstd_load)");
        return NULL;
    }
    Unzstd *z = (Unzstd *)type->tp_alloc(type, 0);
    if (z == NULL)
        return NULL;
    int rc = unz_init(&z->u);
    if (rc < 0) {
        Py_DECREF(z);
        return rc == -2 ? PyErr_NoMemory()
                        : (PyErr_SetString(PyExc_RuntimeError, "decompressor not set up"), NULL);
    }
    return (PyObject *)z;
}

static void Unzstd_dealloc(Unzstd *z) {
    unz_free(&z->u);
    Py_TYPE(z)->tp_free((PyObject *)z);
}

/* step(chunk) -> bytes: one step decompressed whole, without the GIL */
static PyObject *Unzstd_step(Unzstd *z, PyObject *chunk) {
    Py_buffer in;
    if (z->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Unzstd.step: another thread's step is under way");
        return NULL;
    }
    if (PyObject_GetBuffer(chunk, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    char *out = NULL;
    size_t size = 0, cap = 0;
    const char *error = NULL;
    int rc;
    z->busy = 1;
    Py_BEGIN_ALLOW_THREADS; /* the decompressor is this object's; `in` is held */
    rc = unz_step(&z->u, in.buf, (size_t)in.len, &out, &size, &cap, &error);
    Py_END_ALLOW_THREADS;
    z->busy = 0;
    PyBuffer_Release(&in);
    PyObject *result = NULL;
    if (rc == -2)
        PyErr_NoMemory();
    else if (rc == -1)
        PyErr_Format(PyExc_ValueError, "zstd decompress error: %s", error);
    else
        result = PyBytes_FromStringAndSize(out ? out : "", (Py_ssize_t)size);
    PyMem_RawFree(out);
    return result;
}

static PyObject *Unzstd_get_after(Unzstd *z, void *unused) {
    return PyBool_FromLong(z->u.after);
}

static PyMethodDef Unzstd_methods[] = {
    {"step", (PyCFunction)Unzstd_step, METH_O,
     "step(chunk) -> bytes: one step of compressed bytes, decompressed whole"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Unzstd_getset[] = {
    {"after", (getter)Unzstd_get_after, NULL, "bytes came after the frame's end", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject UnzstdType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "marketlab._native.Unzstd",
    .tp_basicsize = sizeof(Unzstd),
    .tp_dealloc = (destructor)Unzstd_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Unzstd(): a recording's zstd stream, decompressed a step at a time (as Inflow "
              "decompresses it).",
    .tp_methods = Unzstd_methods,
    .tp_getset = Unzstd_getset,
    .tp_new = Unzstd_new,
};

/* libzstd's functions from the library of soname `name`: 1, or 0 (the library is let go). */
static int zstd_bind(const char *name) {
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return 0;
    *(void **)&Z.createDStream = dlsym(lib, "ZSTD_createDStream");
    *(void **)&Z.freeDStream = dlsym(lib, "ZSTD_freeDStream");
    *(void **)&Z.initDStream = dlsym(lib, "ZSTD_initDStream");
    *(void **)&Z.decompressStream = dlsym(lib, "ZSTD_decompressStream");
    *(void **)&Z.isError = dlsym(lib, "ZSTD_isError");
    *(void **)&Z.getErrorName = dlsym(lib, "ZSTD_getErrorName");
    if (Z.createDStream && Z.freeDStream && Z.initDStream && Z.decompressStream && Z.isError &&
        Z.getErrorName)
        return 1;
    memset(&Z, 0, sizeof(Z));
    dlclose(lib);
    return 0;
}

PyObject *zstd_load(PyObject *self, PyObject *unused) {
    if (Z_PATH != NULL)
        return Py_NewRef(Z_PATH);
    for (int i = 0; ZSTD_SONAMES[i] != NULL; i++) {
        if (zstd_bind(ZSTD_SONAMES[i])) {
            Z_PATH = PyUnicode_FromString(ZSTD_SONAMES[i]);
            return Z_PATH == NULL ? NULL : Py_NewRef(Z_PATH);
        }
    }
    Py_RETURN_NONE;
}

int native_inflow_init(PyObject *module) {
    if (PyType_Ready(&InflowType) < 0 || PyType_Ready(&UnzstdType) < 0 ||
        PyModule_AddIntConstant(module, "ZSTD_STEP", STEP) < 0 ||
        PyModule_AddIntConstant(module, "ZSTD_STEP_OUT_MAX", (long)STEP_OUT_MAX) < 0 ||
        PyModule_AddObjectRef(module, "Unzstd", (PyObject *)&UnzstdType) < 0)
        return -1;
    return PyModule_AddObjectRef(module, "Inflow", (PyObject *)&InflowType);
}

#else /* no POSIX threads and dlopen: recordings are read ahead by a Python thread */

PyObject *zstd_load(PyObject *self, PyObject *unused) { Py_RETURN_NONE; }
int native_inflow_init(PyObject *module) { return 0; }

#endif
