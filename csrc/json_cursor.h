/* A JSON cursor for the compiled frame readers: plain strings, numbers read to the double
 * msgspec reads, any value passed over. No Python objects are made here (a block of frames is
 * read without the GIL); Python's own float conversion, for the rare number past the exact
 * fast path, needs no GIL either.
 */
#ifndef MARKETLAB_NATIVE_JSON_H
#define MARKETLAB_NATIVE_JSON_H
#include <Python.h>
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* --- a JSON cursor over one payload -----------------------------------------------------
 * The payload is `p` up to `end` and nothing past it is ever read: a payload read ahead from
 * a recording is a slice of a larger buffer, not a bytes object that ends in a NUL, and its
 * last byte may be the last of its buffer. Every look at a byte goes through CLASS or BYTE,
 * which give the end's own class (or a NUL) there.
 */

typedef struct {
    const char *p, *end;
    int gil; /* held: a number past the exact fast path is converted by Python (its dtoa needs
                the GIL); not held: such a number leaves the payload to the caller's other path */
} Cur;

enum { C_WS = 1, C_DIGIT = 2, C_STOP = 4 }; /* C_STOP: ends a plain string (or refuses it) */
#define C_END C_STOP                         /* the payload's end: no space, no digit, a stop */
static unsigned char CLS[256];

static inline void classes_init(void) {
    for (int ch = 0; ch < 256; ch++)
        CLS[ch] = (ch < 0x20 || ch >= 0x80 || ch == '"' || ch == '\\') ? C_STOP : 0;
    CLS[' '] = CLS['\t'] = CLS['\n'] = CLS['\r'] = C_WS;
    CLS['\t'] |= C_STOP; /* controls may not stand in a string */
    CLS['\n'] |= C_STOP;
    CLS['\r'] |= C_STOP;
    for (int ch = '0'; ch <= '9'; ch++)
        CLS[ch] = C_DIGIT;
}

/* the class of the byte at `p`, or C_END at (or past) the payload's end */
#define CLASS(c, p) ((p) < (c)->end ? CLS[(unsigned char)*(p)] : C_END)
/* the byte at `p`, or NUL at the end (no JSON token starts with one) */
#define BYTE(c, p) ((p) < (c)->end ? *(p) : '\0')

static inline void skip_ws(Cur *c) {
    while (CLASS(c, c->p) & C_WS)
        c->p++;
}

static inline int eat(Cur *c, char ch) {
    skip_ws(c);
    if (BYTE(c, c->p) == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A string without escapes: its bytes (0 when it has escapes, controls or non-ASCII bytes, left
 * to msgspec, or is not a string). */
static inline int plain_string(Cur *c, const char **s, Py_ssize_t *n) {
    skip_ws(c);
    const char *p = c->p;
    if (BYTE(c, p) != '"')
        return 0;
    const char *start = ++p;
    while (!(CLASS(c, p) & C_STOP))
        p++;
    if (BYTE(c, p) != '"')
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
static inline int scan_number(Cur *c, double *out) {
    const char *p = c->p, *s = p;
    int neg = BYTE(c, p) == '-', integral = 1, digits = 0, exp10 = 0;
    uint64_t mant = 0;
    p += neg;
    if (BYTE(c, p) == '0') {
        p++;
    } else if (CLASS(c, p) & C_DIGIT) {
        for (; CLASS(c, p) & C_DIGIT; p++, digits++) {
            if (digits < 19)
                mant = mant * 10 + (uint64_t)(*p - '0');
            else
                exp10++;
        }
    } else {
        return 0;
    }
    if (BYTE(c, p) == '.') {
        integral = 0;
        p++;
        if (!(CLASS(c, p) & C_DIGIT))
            return 0;
        for (; CLASS(c, p) & C_DIGIT; p++) {
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
    if (BYTE(c, p) == 'e' || BYTE(c, p) == 'E') {
        integral = 0;
        p++;
        int eneg = 0, e = 0;
        if (BYTE(c, p) == '+' || BYTE(c, p) == '-')
            eneg = *p++ == '-';
        if (!(CLASS(c, p) & C_DIGIT))
            return 0;
        for (; CLASS(c, p) & C_DIGIT; p++)
            if (e < 100000)
                e = e * 10 + (*p - '0');
        exp10 += eneg ? -e : e;
    }
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
    if (!c->gil)
        return 0;
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
static inline int read_float(Cur *c, double *out) {
    skip_ws(c);
    if (BYTE(c, c->p) != '"')
        return scan_number(c, out);
    c->p++;
    if (!scan_number(c, out) || BYTE(c, c->p) != '"')
        return 0;
    c->p++;
    return 1;
}

/* An int field: a JSON integer that fits an int64 (a string, a fraction or more: msgspec's). */
static inline int read_int(Cur *c, int64_t *out) {
    skip_ws(c);
    const char *p = c->p;
    int neg = BYTE(c, p) == '-';
    p += neg;
    if (!(CLASS(c, p) & C_DIGIT) || (*p == '0' && (CLASS(c, p + 1) & C_DIGIT)))
        return 0;
    uint64_t v = 0;
    int digits = 0;
    for (; CLASS(c, p) & C_DIGIT; p++, digits++)
        if (digits < 19)
            v = v * 10 + (uint64_t)(*p - '0');
    /* 19 digits stay below 2^64; beyond int64's range: left to msgspec (a Python int) */
    char next = BYTE(c, p);
    if (digits > 19 || v > (uint64_t)INT64_MAX + (uint64_t)neg || next == '.' || next == 'e' ||
        next == 'E')
        return 0;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    c->p = p;
    return 1;
}

static inline int read_bool(Cur *c, int *out) {
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
static inline int skip_value(Cur *c, int depth) {
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

#endif
