# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled fast path for the v0.4 and v0.5 trace encoders (optional; pure Python otherwise).

Contract: ``encode_v04(chunks)`` / ``encode_v05(chunks)`` return exactly the bytes the pure
encoders in :mod:`.msgpack_v04` / :mod:`.msgpack_v05` produce, i.e. what
``msgpack.Packer(use_bin_type=True).pack(payload)`` gives for the same payload: the smallest
array/map/str header, ints as positive fixint/uint8..uint64 when non-negative and negative
fixint/int8..int64 when negative, floats always as float64, strings as UTF-8 str.

They return ``None`` for anything outside the plain shape, and the caller then runs the pure
encoder on the whole payload, so every error keeps msgpack's type and message:

* ``chunks`` or ``chunk.spans`` not an exact list/tuple, a chunk not exactly ``TraceChunk``,
  a span not exactly ``DDSpan``, an attribute that cannot be read;
* a span with ``meta_struct``, ``span_links`` or ``span_events`` not ``None``;
* any value not of the exact expected type (a str/int/float/dict subclass, a bool where an int
  is expected or in metrics, a non-str meta key or value);
* an int outside [-2**63, 2**64), a str that is not encodable as UTF-8 (lone surrogate), a
  length above 2**32 - 1, a failed allocation.

Span and chunk fields are read the way ``getattr`` ends up reading them, minus the lookup:
from the ``__slots__`` offset of the pure-Python dataclass, or through the C getter of a
mypyc-compiled ``model.py`` (decided once, at import; plain ``getattr`` otherwise). The GIL is
held throughout and, in those two cases, nothing calls back into Python code (exact builtin
types only), so nothing changes under the encoder; list lengths are re-checked per item anyway.

v0.5 numbers the string table exactly like the pure encoder (first use; per span: meta key,
meta value, metrics keys, then service, name, resource, type), looked up by object identity
first and by value (a dict) for a str object not seen yet.
"""

from libc.stdlib cimport calloc, malloc, realloc, free
from libc.string cimport memcpy
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from cpython.object cimport PyObject, PyTypeObject

import sys
import types as _types

from otel_dd_bridge.model import DDSpan, TraceChunk

__all__ = ["encode_v04", "encode_v05"]


cdef extern from "Python.h":
    PyTypeObject PyUnicode_Type
    PyTypeObject PyLong_Type
    PyTypeObject PyFloat_Type
    PyTypeObject PyDict_Type
    PyTypeObject PyList_Type
    PyTypeObject PyTuple_Type
    PyTypeObject* Py_TYPE(PyObject* o)
    PyObject* Py_None
    const char* PyUnicode_AsUTF8AndSize(PyObject* s, Py_ssize_t* size)
    long long PyLong_AsLongLongAndOverflow(PyObject* o, int* overflow)
    unsigned long long PyLong_AsUnsignedLongLong(PyObject* o)
    double PyLong_AsDouble(PyObject* o)
    double PyFloat_AS_DOUBLE(PyObject* o)
    Py_ssize_t PyDict_GET_SIZE(PyObject* d)
    int PyDict_Next(PyObject* d, Py_ssize_t* pos, PyObject** key, PyObject** value)
    PyObject* PyDict_GetItemWithError(PyObject* d, PyObject* key)
    Py_ssize_t PyLong_AsSsize_t(PyObject* o)
    Py_ssize_t PySequence_Fast_GET_SIZE(PyObject* o)
    PyObject** PySequence_Fast_ITEMS(PyObject* o)
    int PyDict_SetItem(PyObject* d, PyObject* key, PyObject* value)
    PyObject* PyLong_FromSsize_t(Py_ssize_t v)
    void Py_DECREF(PyObject* o)
    PyObject* PyErr_Occurred()
    PyObject* PyBytes_FromStringAndSize(const char* s, Py_ssize_t n)
    char* PyBytes_AS_STRING(PyObject* o)
    int _PyBytes_Resize(PyObject** o, Py_ssize_t n)
    bint PyUnicode_IS_COMPACT_ASCII(PyObject* o)
    void* PyUnicode_DATA(PyObject* o)
    Py_ssize_t PyUnicode_GET_LENGTH(PyObject* o)
    void PyErr_Clear()

cdef extern from *:
    """
    /* An exact int's value as a uint64 without a call, from CPython 3.11's layout (ob_size =
       sign x number of 30-bit digits): 1 and a value when it is in [0, 2**64), else 0 (then
       the generic path runs, also on every other CPython version). */
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && PYLONG_BITS_IN_DIGIT == 30
    static inline int _fp_small_uint(PyObject *o, uint64_t *out) {
        Py_ssize_t n = Py_SIZE(o);
        const digit *d = ((PyLongObject *)o)->ob_digit;
        if (n == 0) { *out = 0; return 1; }
        if (n == 1) { *out = d[0]; return 1; }
        if (n == 2) { *out = (uint64_t)d[0] | ((uint64_t)d[1] << 30); return 1; }
        if (n == 3 && d[2] < 16) {
            *out = (uint64_t)d[0] | ((uint64_t)d[1] << 30) | ((uint64_t)d[2] << 60);
            return 1;
        }
        return 0;
    }
    #else
    static inline int _fp_small_uint(PyObject *o, uint64_t *out) { (void)o; (void)out; return 0; }
    #endif
    """
    int _fp_small_uint(PyObject* o, uint64_t* out) noexcept


cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    int T_OBJECT_EX

cdef extern from *:
    """
    #define _FP_DESCR_MEMBER(o) (((PyMemberDescrObject *)(o))->d_member)
    #define _FP_DESCR_GETSET(o) (((PyGetSetDescrObject *)(o))->d_getset)
    #define _FP_SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))
    """
    ctypedef PyObject* (*getter)(PyObject* obj, void* closure)
    ctypedef struct PyGetSetDef:
        getter get
        void* closure
    PyMemberDef* _FP_DESCR_MEMBER(PyObject* descr)
    PyGetSetDef* _FP_DESCR_GETSET(PyObject* descr)
    PyObject* _FP_SLOT(PyObject* obj, Py_ssize_t offset)
    PyObject* PyObject_GetAttr(PyObject* o, PyObject* name)
    void Py_INCREF(PyObject* o)
    void Py_XDECREF(PyObject* o)


# ---------------------------------------------------------------------------------------------
# Reading the model classes' fields
#
# How each field is read is decided once, at import, from the exact class's descriptor: a
# ``__slots__`` member (the pure-Python dataclass) is read at its offset, a getset descriptor
# (a mypyc-compiled model.py) through its C getter, anything else with ``getattr``. Every
# read returns a new reference (NULL, error cleared, when the attribute is unset).


cdef enum FieldKind:
    FIELD_SLOT
    FIELD_GETSET
    FIELD_GETATTR


cdef struct Field:
    FieldKind kind
    Py_ssize_t offset   # FIELD_SLOT
    getter get          # FIELD_GETSET
    void* closure
    PyObject* name      # FIELD_GETATTR (kept alive by _FIELD_NAMES)


cdef enum:
    F_TRACE_ID, F_SPAN_ID, F_PARENT_ID, F_SERVICE, F_NAME, F_RESOURCE, F_TYPE, F_START
    F_DURATION, F_ERROR, F_META, F_METRICS, F_META_STRUCT, F_SPAN_LINKS, F_SPAN_EVENTS, F_TAIL
    N_SPAN_FIELDS

# ``_meta``/``_tail``: the span's own meta entries and the shared tail (model.DDSpan), read
# without merging them; their keys are disjoint, the tail follows.
_SPAN_FIELD_NAMES = ("trace_id", "span_id", "parent_id", "service", "name", "resource", "type",
                     "start", "duration", "error", "_meta", "metrics", "meta_struct",
                     "span_links", "span_events", "_tail")
_FIELD_NAMES = []


cdef void _setup_field(Field* f, cls, str name):
    descr = cls.__dict__.get(name)
    cdef PyMemberDef* m
    cdef PyGetSetDef* g
    f.kind = FIELD_GETATTR
    f.offset = 0
    f.get = NULL
    f.closure = NULL
    name = sys.intern(name)
    _FIELD_NAMES.append(name)
    f.name = <PyObject*>name
    if type(descr) is _types.MemberDescriptorType:
        m = _FP_DESCR_MEMBER(<PyObject*>descr)
        if m.type == T_OBJECT_EX and m.offset > 0:
            f.kind = FIELD_SLOT
            f.offset = m.offset
    elif type(descr) is _types.GetSetDescriptorType:
        g = _FP_DESCR_GETSET(<PyObject*>descr)
        if g.get != NULL:
            f.kind = FIELD_GETSET
            f.get = g.get
            f.closure = g.closure


cdef inline PyObject* field_get(Field* f, PyObject* o) noexcept:
    """``o.<field>`` as a new reference, or NULL (error cleared)."""
    cdef PyObject* v
    if f.kind == FIELD_SLOT:
        v = _FP_SLOT(o, f.offset)
        if v != NULL:
            Py_INCREF(v)
        return v
    if f.kind == FIELD_GETSET:
        v = f.get(o, f.closure)
    else:
        v = PyObject_GetAttr(o, f.name)
    if v == NULL:
        PyErr_Clear()
    return v


cdef PyTypeObject* _SPAN_TYPE = <PyTypeObject*>DDSpan
cdef PyTypeObject* _CHUNK_TYPE = <PyTypeObject*>TraceChunk
cdef Field SPAN_FIELDS[N_SPAN_FIELDS]
cdef Field CHUNK_SPANS
for _i, _n in enumerate(_SPAN_FIELD_NAMES):
    _setup_field(&SPAN_FIELDS[_i], DDSpan, _n)
_setup_field(&CHUNK_SPANS, TraceChunk, "spans")


cdef inline int load_span(PyObject* s, PyObject** f) noexcept:
    """Fill ``f`` with the fields of a plain span (new references; the caller releases them
    with :func:`release_span` in every case); -1 when ``s`` is not one."""
    cdef int i
    for i in range(N_SPAN_FIELDS):
        f[i] = NULL
    if Py_TYPE(s) != _SPAN_TYPE:
        return -1
    for i in range(N_SPAN_FIELDS):
        f[i] = field_get(&SPAN_FIELDS[i], s)
        if f[i] == NULL:
            return -1
    if f[F_META_STRUCT] != Py_None or f[F_SPAN_LINKS] != Py_None or f[F_SPAN_EVENTS] != Py_None:
        return -1
    if Py_TYPE(f[F_META]) != &PyDict_Type:
        return -1
    if f[F_TAIL] != Py_None and Py_TYPE(f[F_TAIL]) != &PyDict_Type:
        return -1
    return 0


cdef inline Py_ssize_t meta_size(PyObject** f) noexcept:
    """Entries of the span's meta map: its own plus the shared tail's."""
    if f[F_TAIL] == Py_None:
        return PyDict_GET_SIZE(f[F_META])
    return PyDict_GET_SIZE(f[F_META]) + PyDict_GET_SIZE(f[F_TAIL])


cdef inline void release_span(PyObject** f) noexcept:
    cdef int i
    for i in range(N_SPAN_FIELDS):
        Py_XDECREF(f[i])


cdef inline PyObject* chunk_spans(PyObject* chunk) noexcept:
    """``chunk.spans`` (new reference) of an exact TraceChunk, else NULL."""
    if Py_TYPE(chunk) != _CHUNK_TYPE:
        return NULL
    return field_get(&CHUNK_SPANS, chunk)


# ---------------------------------------------------------------------------------------------
# The output buffer


cdef struct Buf:
    char* p
    Py_ssize_t n
    Py_ssize_t cap
    PyObject* obj  # the bytes object written in place (an output), or NULL (malloc'ed scratch)


cdef int buf_init(Buf* b, Py_ssize_t cap) noexcept:
    """A malloc'ed scratch buffer."""
    b.n = 0
    b.cap = cap
    b.obj = NULL
    b.p = <char*>malloc(cap)
    return 0 if b.p != NULL else -1


cdef int buf_init_bytes(Buf* b, Py_ssize_t cap) noexcept:
    """An output buffer: a bytes object filled in place and shrunk by :func:`buf_take`, so the
    result is never copied."""
    b.n = 0
    b.cap = cap
    b.p = NULL
    b.obj = PyBytes_FromStringAndSize(NULL, cap)
    if b.obj == NULL:
        PyErr_Clear()
        return -1
    b.p = PyBytes_AS_STRING(b.obj)
    return 0


cdef int buf_grow(Buf* b, Py_ssize_t need) noexcept:
    cdef Py_ssize_t cap = b.cap * 2
    cdef char* p
    if cap < b.n + need:
        cap = b.n + need
    if b.obj != NULL:
        if _PyBytes_Resize(&b.obj, cap) < 0:  # frees the object and sets b.obj = NULL
            PyErr_Clear()
            b.p = NULL
            return -1
        p = PyBytes_AS_STRING(b.obj)
    else:
        p = <char*>realloc(b.p, cap)
        if p == NULL:
            return -1
    b.p = p
    b.cap = cap
    return 0


cdef void buf_release(Buf* b) noexcept:
    if b.obj != NULL:
        Py_DECREF(b.obj)
        b.obj = NULL
    else:
        free(b.p)
    b.p = NULL


cdef object buf_take(Buf* b):
    """The output buffer's bytes (``None`` on failure); the buffer is released."""
    if _PyBytes_Resize(&b.obj, b.n) < 0:
        PyErr_Clear()
        b.p = NULL
        return None
    out = <object>b.obj
    buf_release(b)
    return out


cdef inline int ensure(Buf* b, Py_ssize_t need) noexcept:
    """Room for ``need`` more bytes; -1 when the allocation fails."""
    if b.n + need <= b.cap:
        return 0
    return buf_grow(b, need)


cdef inline void put1(Buf* b, uint8_t v) noexcept:
    b.p[b.n] = <char>v
    b.n += 1


cdef inline void put_be16(Buf* b, uint16_t v) noexcept:
    cdef unsigned char* q = <unsigned char*>(b.p + b.n)
    q[0] = <unsigned char>(v >> 8)
    q[1] = <unsigned char>v
    b.n += 2


cdef inline void put_be32(Buf* b, uint32_t v) noexcept:
    cdef unsigned char* q = <unsigned char*>(b.p + b.n)
    q[0] = <unsigned char>(v >> 24)
    q[1] = <unsigned char>(v >> 16)
    q[2] = <unsigned char>(v >> 8)
    q[3] = <unsigned char>v
    b.n += 4


cdef inline void put_be64(Buf* b, uint64_t v) noexcept:
    cdef unsigned char* q = <unsigned char*>(b.p + b.n)
    cdef int i
    for i in range(8):
        q[i] = <unsigned char>(v >> (56 - 8 * i))
    b.n += 8


cdef inline void copy_bytes(char* dst, const char* src, Py_ssize_t n) noexcept:
    """``memcpy`` with the short lengths (most keys and values) copied inline: two overlapping
    fixed-size moves instead of a library call."""
    if n > 16:
        memcpy(dst, src, n)
    elif n >= 8:
        memcpy(dst, src, 8)
        memcpy(dst + n - 8, src + n - 8, 8)
    elif n >= 4:
        memcpy(dst, src, 4)
        memcpy(dst + n - 4, src + n - 4, 4)
    else:
        while n > 0:
            n -= 1
            dst[n] = src[n]


cdef inline int write_raw(Buf* b, const char* s, Py_ssize_t n) noexcept:
    if ensure(b, n) < 0:
        return -1
    copy_bytes(b.p + b.n, s, n)
    b.n += n
    return 0


# ---------------------------------------------------------------------------------------------
# msgpack items (msgpack-python's choices, use_bin_type=True)


cdef inline int write_container_header(Buf* b, Py_ssize_t n, uint8_t fix, uint8_t c16,
                                       uint8_t c32) noexcept:
    if ensure(b, 5) < 0:
        return -1
    if n < 16:
        put1(b, fix | <uint8_t>n)
    elif n <= 0xFFFF:
        put1(b, c16)
        put_be16(b, <uint16_t>n)
    elif n <= 0xFFFFFFFFLL:
        put1(b, c32)
        put_be32(b, <uint32_t>n)
    else:
        return -1
    return 0


cdef inline int write_array_header(Buf* b, Py_ssize_t n) noexcept:
    return write_container_header(b, n, 0x90, 0xDC, 0xDD)


cdef inline int write_map_header(Buf* b, Py_ssize_t n) noexcept:
    return write_container_header(b, n, 0x80, 0xDE, 0xDF)


cdef inline int write_str(Buf* b, PyObject* o) noexcept:
    """An exact str as msgpack str (fixstr/str8/str16/str32); -1 for anything else."""
    cdef Py_ssize_t n
    cdef const char* s
    if Py_TYPE(o) != &PyUnicode_Type:
        return -1
    if PyUnicode_IS_COMPACT_ASCII(o):  # the common case: the characters are the UTF-8
        s = <const char*>PyUnicode_DATA(o)
        n = PyUnicode_GET_LENGTH(o)
    else:
        s = PyUnicode_AsUTF8AndSize(o, &n)  # cached in the str object after the first call
        if s == NULL:  # lone surrogate: the pure path raises msgpack's own error
            PyErr_Clear()
            return -1
    if ensure(b, n + 5) < 0:
        return -1
    if n < 32:
        put1(b, 0xA0 | <uint8_t>n)
    elif n <= 0xFF:
        put1(b, 0xD9)
        put1(b, <uint8_t>n)
    elif n <= 0xFFFF:
        put1(b, 0xDA)
        put_be16(b, <uint16_t>n)
    elif n <= 0xFFFFFFFFLL:
        put1(b, 0xDB)
        put_be32(b, <uint32_t>n)
    else:
        return -1
    copy_bytes(b.p + b.n, s, n)
    b.n += n
    return 0


cdef inline int write_uint(Buf* b, uint64_t v) noexcept:
    if ensure(b, 9) < 0:
        return -1
    if v < 0x80:
        put1(b, <uint8_t>v)
    elif v <= 0xFF:
        put1(b, 0xCC)
        put1(b, <uint8_t>v)
    elif v <= 0xFFFF:
        put1(b, 0xCD)
        put_be16(b, <uint16_t>v)
    elif v <= 0xFFFFFFFFULL:
        put1(b, 0xCE)
        put_be32(b, <uint32_t>v)
    else:
        put1(b, 0xCF)
        put_be64(b, v)
    return 0


cdef inline int write_negative(Buf* b, int64_t v) noexcept:
    if ensure(b, 9) < 0:
        return -1
    if v >= -32:
        put1(b, <uint8_t>v)  # negative fixint 0xe0..0xff
    elif v >= -0x80:
        put1(b, 0xD0)
        put1(b, <uint8_t>v)
    elif v >= -0x8000:
        put1(b, 0xD1)
        put_be16(b, <uint16_t>v)
    elif v >= -0x80000000LL:
        put1(b, 0xD2)
        put_be32(b, <uint32_t>v)
    else:
        put1(b, 0xD3)
        put_be64(b, <uint64_t>v)
    return 0


cdef inline int write_int(Buf* b, PyObject* o) noexcept:
    """An exact int in [-2**63, 2**64); -1 for anything else (bool included)."""
    cdef int overflow = 0
    cdef long long v
    cdef unsigned long long u
    cdef uint64_t small
    if Py_TYPE(o) != &PyLong_Type:
        return -1
    if _fp_small_uint(o, &small):  # ids, times, counts: no call
        return write_uint(b, small)
    v = PyLong_AsLongLongAndOverflow(o, &overflow)
    if overflow == 0:
        if v >= 0:
            return write_uint(b, <uint64_t>v)
        return write_negative(b, <int64_t>v)
    if overflow < 0:
        return -1
    u = PyLong_AsUnsignedLongLong(o)
    if u == <unsigned long long>-1 and PyErr_Occurred() != NULL:
        PyErr_Clear()
        return -1
    return write_uint(b, <uint64_t>u)


cdef inline int write_double(Buf* b, double d) noexcept:
    cdef uint64_t bits
    if ensure(b, 9) < 0:
        return -1
    memcpy(&bits, &d, 8)
    put1(b, 0xCB)
    put_be64(b, bits)
    return 0


cdef inline int write_number(Buf* b, PyObject* o) noexcept:
    """An exact float (as float64) or an exact int; -1 for anything else."""
    if Py_TYPE(o) == &PyFloat_Type:
        return write_double(b, PyFloat_AS_DOUBLE(o))
    return write_int(b, o)


# ---------------------------------------------------------------------------------------------
# Traces: array(chunks) of array(spans), shared by both formats; the span writer receives the
# v0.5 string table (NULL for v0.4), whose types are declared here for its signature.


cdef struct IdSlot:
    PyObject* key     # a str object (strong reference), NULL when free
    Py_ssize_t index


cdef struct IdMap:
    IdSlot* slots
    Py_ssize_t mask   # capacity - 1 (a power of two)
    Py_ssize_t used


# The packed entries of the shared meta tails seen in one call (DDSpan._tail): spans of one
# resource, scope and status share one tail object, so its entries are packed once per payload
# and copied after that. v0.5 too: a string keeps its table index for the whole payload.
cdef enum:
    N_TAILS = 16


cdef struct TailSlot:
    PyObject* tail    # the tail dict (strong reference)
    Py_ssize_t off    # its packed entries: tails.p[off:off + n]
    Py_ssize_t n


cdef struct TailCache:
    TailSlot slots[N_TAILS]
    int used
    Buf bytes


cdef struct Table:
    TailCache tails   # both formats
    PyObject* index   # dict str -> int: the v0.5 string table by value (owned by the caller)
    IdMap ids         # str object -> index: the same, by identity (most strings repeat as the
                      # same object: one pointer probe instead of hashing and comparing)
    Buf strings       # the table's items, already packed as msgpack str
    Buf side          # scratch: one span's meta and metrics
    Py_ssize_t size


ctypedef int (*span_writer)(Table* t, Buf* b, PyObject* span) noexcept
ctypedef int (*entry_writer)(Table* t, Buf* b, PyObject* k, PyObject* v) noexcept


cdef int tails_init(TailCache* c) noexcept:
    c.used = 0
    return buf_init(&c.bytes, 4096)


cdef void tails_release(TailCache* c) noexcept:
    cdef int i
    for i in range(c.used):
        Py_DECREF(c.slots[i].tail)
    c.used = 0
    if c.bytes.p != NULL:
        buf_release(&c.bytes)


cdef int write_tail(Table* t, Buf* b, PyObject* tail, entry_writer write_entry) noexcept:
    """The entries of the exact dict ``tail``: packed once per call, copied after that."""
    cdef TailCache* c = &t.tails
    cdef Py_ssize_t pos = 0, start = b.n
    cdef PyObject* k
    cdef PyObject* v
    cdef TailSlot* slot
    cdef int i
    for i in range(c.used):
        if c.slots[i].tail == tail:
            return write_raw(b, c.bytes.p + c.slots[i].off, c.slots[i].n)
    while PyDict_Next(tail, &pos, &k, &v):
        if write_entry(t, b, k, v) < 0:
            return -1
    if c.used < N_TAILS and ensure(&c.bytes, b.n - start) == 0:
        slot = &c.slots[c.used]
        Py_INCREF(tail)
        slot.tail = tail
        slot.off = c.bytes.n
        slot.n = b.n - start
        copy_bytes(c.bytes.p + c.bytes.n, b.p + start, slot.n)
        c.bytes.n += slot.n
        c.used += 1
    return 0


cdef inline PyObject* seq_item(PyObject* seq, Py_ssize_t i, Py_ssize_t n) noexcept:
    """Item ``i`` (new reference) of an exact list/tuple that still has ``n`` items, else NULL.

    Re-checked per item: the header is already written, and a ``getattr``-read field could
    in principle run code that changes the list.
    """
    cdef PyObject* v
    if PySequence_Fast_GET_SIZE(seq) != n:
        return NULL
    v = PySequence_Fast_ITEMS(seq)[i]
    Py_INCREF(v)
    return v


cdef inline bint is_sequence(PyObject* o) noexcept:
    return Py_TYPE(o) == &PyList_Type or Py_TYPE(o) == &PyTuple_Type


cdef int write_spans(Table* t, Buf* b, PyObject* spans, span_writer write_span) noexcept:
    cdef Py_ssize_t n, i
    cdef PyObject* s
    cdef int rc = 0
    if not is_sequence(spans):
        return -1
    n = PySequence_Fast_GET_SIZE(spans)
    if write_array_header(b, n) < 0:
        return -1
    for i in range(n):
        s = seq_item(spans, i, n)
        if s == NULL:
            return -1
        rc = write_span(t, b, s)
        Py_DECREF(s)
        if rc < 0:
            return -1
    return 0


cdef int write_traces(Table* t, Buf* b, PyObject* chunks, span_writer write_span) noexcept:
    cdef Py_ssize_t n, i
    cdef PyObject* chunk
    cdef PyObject* spans
    cdef int rc = 0
    if not is_sequence(chunks):
        return -1
    n = PySequence_Fast_GET_SIZE(chunks)
    if write_array_header(b, n) < 0:
        return -1
    for i in range(n):
        chunk = seq_item(chunks, i, n)
        if chunk == NULL:
            return -1
        spans = chunk_spans(chunk)
        Py_DECREF(chunk)
        if spans == NULL:
            return -1
        rc = write_spans(t, b, spans, write_span)
        Py_DECREF(spans)
        if rc < 0:
            return -1
    return 0


# ---------------------------------------------------------------------------------------------
# v0.4


# The 12 span keys, each with its fixstr header; the first one with the span's fixmap(12).
cdef const char* K_TRACE_ID = b"\x8c\xa8trace_id"
cdef const char* K_SPAN_ID = b"\xa7span_id"
cdef const char* K_PARENT_ID = b"\xa9parent_id"
cdef const char* K_SERVICE = b"\xa7service"
cdef const char* K_NAME = b"\xa4name"
cdef const char* K_RESOURCE = b"\xa8resource"
cdef const char* K_TYPE = b"\xa4type"
cdef const char* K_START = b"\xa5start"
cdef const char* K_DURATION = b"\xa8duration"
cdef const char* K_ERROR = b"\xa5error"
cdef const char* K_META = b"\xa4meta"
cdef const char* K_METRICS = b"\xa7metrics"


cdef int write_v04_entry(Table* t, Buf* b, PyObject* k, PyObject* v) noexcept:
    if write_str(b, k) < 0 or write_str(b, v) < 0:
        return -1
    return 0


cdef inline int write_v04_meta(Table* t, Buf* b, PyObject** f) noexcept:
    cdef Py_ssize_t pos = 0
    cdef PyObject* d = f[F_META]
    cdef PyObject* k
    cdef PyObject* v
    if write_map_header(b, meta_size(f)) < 0:
        return -1
    while PyDict_Next(d, &pos, &k, &v):
        if write_str(b, k) < 0 or write_str(b, v) < 0:
            return -1
    if f[F_TAIL] != Py_None:
        return write_tail(t, b, f[F_TAIL], write_v04_entry)
    return 0


cdef inline int write_v04_metrics(Buf* b, PyObject* d) noexcept:
    cdef Py_ssize_t pos = 0
    cdef PyObject* k
    cdef PyObject* v
    if Py_TYPE(d) != &PyDict_Type:
        return -1
    if write_map_header(b, PyDict_GET_SIZE(d)) < 0:
        return -1
    while PyDict_Next(d, &pos, &k, &v):
        if write_str(b, k) < 0 or write_number(b, v) < 0:
            return -1
    return 0


cdef int write_v04_fields(Table* t, Buf* b, PyObject** f) noexcept:
    if (write_raw(b, K_TRACE_ID, 10) < 0 or write_int(b, f[F_TRACE_ID]) < 0
            or write_raw(b, K_SPAN_ID, 8) < 0 or write_int(b, f[F_SPAN_ID]) < 0
            or write_raw(b, K_PARENT_ID, 10) < 0
            or write_int(b, f[F_PARENT_ID]) < 0
            or write_raw(b, K_SERVICE, 8) < 0 or write_str(b, f[F_SERVICE]) < 0
            or write_raw(b, K_NAME, 5) < 0 or write_str(b, f[F_NAME]) < 0
            or write_raw(b, K_RESOURCE, 9) < 0
            or write_str(b, f[F_RESOURCE]) < 0
            or write_raw(b, K_TYPE, 5) < 0 or write_str(b, f[F_TYPE]) < 0
            or write_raw(b, K_START, 6) < 0 or write_int(b, f[F_START]) < 0
            or write_raw(b, K_DURATION, 9) < 0
            or write_int(b, f[F_DURATION]) < 0
            or write_raw(b, K_ERROR, 6) < 0 or write_int(b, f[F_ERROR]) < 0
            or write_raw(b, K_META, 5) < 0 or write_v04_meta(t, b, f) < 0
            or write_raw(b, K_METRICS, 8) < 0
            or write_v04_metrics(b, f[F_METRICS]) < 0):
        return -1
    return 0


cdef int write_v04_span(Table* t, Buf* b, PyObject* s) noexcept:
    cdef PyObject* f[N_SPAN_FIELDS]
    cdef int rc = load_span(s, f)
    if rc == 0:
        rc = write_v04_fields(t, b, f)
    release_span(f)
    return rc


def encode_v04(chunks):
    """The v0.4 body for ``chunks`` (see the module docstring), or ``None``: use the pure path."""
    cdef Buf b
    cdef Table t  # only its tail cache
    # A first guess (a chunk is typically a few spans of ~1 KiB); the buffer grows as needed.
    cdef Py_ssize_t guess = 4096 * len(chunks) if is_sequence(<PyObject*>chunks) else 0
    if tails_init(&t.tails) < 0:
        return None
    if buf_init_bytes(&b, min(guess, 1 << 24) + 1024) < 0:
        tails_release(&t.tails)
        return None
    cdef int rc = write_traces(&t, &b, <PyObject*>chunks, write_v04_span)
    tails_release(&t.tails)
    if rc < 0:
        buf_release(&b)
        return None
    return buf_take(&b)


# ---------------------------------------------------------------------------------------------
# v0.5: a string table plus 12-element span arrays of table indices


cdef int idmap_init(IdMap* m, Py_ssize_t capacity) noexcept:
    m.slots = <IdSlot*>calloc(capacity, sizeof(IdSlot))
    m.mask = capacity - 1
    m.used = 0
    return 0 if m.slots != NULL else -1


cdef void idmap_release(IdMap* m) noexcept:
    cdef Py_ssize_t i
    if m.slots == NULL:
        return
    for i in range(m.mask + 1):
        Py_XDECREF(m.slots[i].key)
    free(m.slots)
    m.slots = NULL


cdef inline Py_ssize_t idmap_home(IdMap* m, PyObject* key) noexcept:
    return <Py_ssize_t>(((<size_t>key >> 4) * <size_t>0x9E3779B97F4A7C15ULL) >> 20) & m.mask


cdef inline IdSlot* idmap_find(IdMap* m, PyObject* key) noexcept:
    """The slot holding ``key``, or the free slot where it belongs."""
    cdef Py_ssize_t i = idmap_home(m, key)
    while m.slots[i].key != NULL and m.slots[i].key != key:
        i = (i + 1) & m.mask
    return &m.slots[i]


cdef int idmap_add(IdMap* m, PyObject* key, Py_ssize_t index) noexcept:
    """Remember ``key -> index`` (``key`` not yet present); doubles the table at half full."""
    cdef IdMap bigger
    cdef IdSlot* slot
    cdef Py_ssize_t i
    if (m.used + 1) * 2 > m.mask + 1:
        if idmap_init(&bigger, (m.mask + 1) * 2) < 0:
            return -1
        for i in range(m.mask + 1):
            if m.slots[i].key != NULL:
                slot = idmap_find(&bigger, m.slots[i].key)
                slot[0] = m.slots[i]  # the reference moves along
        bigger.used = m.used
        free(m.slots)
        m[0] = bigger
    slot = idmap_find(m, key)
    Py_INCREF(key)
    slot.key = key
    slot.index = index
    m.used += 1
    return 0


cdef inline int table_ref(Table* t, Buf* b, PyObject* s) noexcept:
    """Write the table index of the exact str ``s`` to ``b``, adding it on first use."""
    cdef IdSlot* slot
    cdef PyObject* hit
    cdef PyObject* idx
    cdef Py_ssize_t index
    cdef int rc
    if Py_TYPE(s) != &PyUnicode_Type:
        return -1
    slot = idmap_find(&t.ids, s)
    if slot.key != NULL:
        return write_uint(b, <uint64_t>slot.index)
    hit = PyDict_GetItemWithError(t.index, s)  # exact str: hashing and comparing cannot fail
    if hit != NULL:
        index = PyLong_AsSsize_t(hit)
    else:
        if PyErr_Occurred() != NULL or write_str(&t.strings, s) < 0:
            PyErr_Clear()
            return -1
        index = t.size
        idx = PyLong_FromSsize_t(index)
        if idx == NULL:
            PyErr_Clear()
            return -1
        rc = PyDict_SetItem(t.index, s, idx)
        Py_DECREF(idx)
        if rc < 0:
            PyErr_Clear()
            return -1
        t.size += 1
    if idmap_add(&t.ids, s, index) < 0:
        return -1
    return write_uint(b, <uint64_t>index)


cdef int write_v05_entry(Table* t, Buf* b, PyObject* k, PyObject* v) noexcept:
    if table_ref(t, b, k) < 0 or table_ref(t, b, v) < 0:
        return -1
    return 0


cdef inline int write_v05_meta(Table* t, Buf* b, PyObject** f) noexcept:
    cdef Py_ssize_t pos = 0
    cdef PyObject* d = f[F_META]
    cdef PyObject* k
    cdef PyObject* v
    if write_map_header(b, meta_size(f)) < 0:
        return -1
    while PyDict_Next(d, &pos, &k, &v):
        if table_ref(t, b, k) < 0 or table_ref(t, b, v) < 0:
            return -1
    if f[F_TAIL] != Py_None:
        return write_tail(t, b, f[F_TAIL], write_v05_entry)
    return 0


cdef inline int write_v05_metrics(Table* t, Buf* b, PyObject* d) noexcept:
    """Values as float64, like ``float(v)`` in the pure encoder (exact int/float only)."""
    cdef Py_ssize_t pos = 0
    cdef PyObject* k
    cdef PyObject* v
    cdef double x
    if Py_TYPE(d) != &PyDict_Type:
        return -1
    if write_map_header(b, PyDict_GET_SIZE(d)) < 0:
        return -1
    while PyDict_Next(d, &pos, &k, &v):
        if table_ref(t, b, k) < 0:
            return -1
        if Py_TYPE(v) == &PyFloat_Type:
            x = PyFloat_AS_DOUBLE(v)
        elif Py_TYPE(v) == &PyLong_Type:
            x = PyLong_AsDouble(v)  # float(int): correctly rounded, OverflowError when huge
            if x == -1.0 and PyErr_Occurred() != NULL:
                PyErr_Clear()
                return -1
        else:
            return -1
        if write_double(b, x) < 0:
            return -1
    return 0


cdef int write_v05_fields(Table* t, Buf* b, PyObject** f) noexcept:
    # The pure encoder fills the table in this order: meta (key, value), metrics keys, then
    # service, name, resource, type. The span's elements go out in wire order (meta/metrics
    # are elements 9 and 10), so meta and metrics are packed into t.side first.
    t.side.n = 0
    if (write_v05_meta(t, &t.side, f) < 0
            or write_v05_metrics(t, &t.side, f[F_METRICS]) < 0
            or ensure(b, 1) < 0):
        return -1
    put1(b, 0x9C)  # fixarray(12)
    if (table_ref(t, b, f[F_SERVICE]) < 0
            or table_ref(t, b, f[F_NAME]) < 0
            or table_ref(t, b, f[F_RESOURCE]) < 0
            or write_int(b, f[F_TRACE_ID]) < 0
            or write_int(b, f[F_SPAN_ID]) < 0
            or write_int(b, f[F_PARENT_ID]) < 0
            or write_int(b, f[F_START]) < 0
            or write_int(b, f[F_DURATION]) < 0
            or write_int(b, f[F_ERROR]) < 0
            or write_raw(b, t.side.p, t.side.n) < 0
            or table_ref(t, b, f[F_TYPE]) < 0):
        return -1
    return 0


cdef int write_v05_span(Table* t, Buf* b, PyObject* s) noexcept:
    cdef PyObject* f[N_SPAN_FIELDS]
    cdef int rc = load_span(s, f)
    if rc == 0:
        rc = write_v05_fields(t, b, f)
    release_span(f)
    return rc


def encode_v05(chunks):
    """The v0.5 body for ``chunks`` (see the module docstring), or ``None``: use the pure path."""
    cdef Buf body, out
    cdef Table t
    t.ids.slots = NULL
    t.tails.used = 0
    t.tails.bytes.p = NULL
    cdef dict index = {"": 0}
    cdef object result = None
    body.p = out.p = t.strings.p = t.side.p = NULL
    body.obj = out.obj = t.strings.obj = t.side.obj = NULL
    t.index = <PyObject*>index
    t.size = 1
    if (tails_init(&t.tails) == 0 and idmap_init(&t.ids, 1024) == 0
            and buf_init(&body, 65536) == 0
            and buf_init(&t.strings, 16384) == 0 and buf_init(&t.side, 4096) == 0):
        put1(&t.strings, 0xA0)  # index 0 is ""
        if (write_traces(&t, &body, <PyObject*>chunks, write_v05_span) == 0
                and buf_init_bytes(&out, body.n + t.strings.n + 6) == 0):
            put1(&out, 0x92)  # [table, traces]
            if (write_array_header(&out, t.size) == 0
                    and write_raw(&out, t.strings.p, t.strings.n) == 0
                    and write_raw(&out, body.p, body.n) == 0):
                result = buf_take(&out)
    buf_release(&body)
    buf_release(&t.strings)
    buf_release(&t.side)
    buf_release(&out)
    idmap_release(&t.ids)
    tails_release(&t.tails)
    return result
