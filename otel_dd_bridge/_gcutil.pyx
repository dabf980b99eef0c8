# cython: language_level=3
"""Leave translated objects out of CPython's cyclic garbage collector (compiled build only).

A translated batch allocates one ``DDSpan`` per span and a ``TraceChunk`` plus its span list
per trace: GC-tracked objects that live until the batch is sent. The collector counts them
(a collection every ~700 allocations walks every young tracked object), and the ones that
survive a collection are promoted and count towards the next *full* collection, a walk of the
host application's whole heap. These objects cannot be part of a reference cycle: a
``DDSpan`` holds strings, numbers and dicts of strings and numbers; a chunk holds its spans,
a dict of strings and a ``PayloadInfo`` of strings. Untracked, reference counting still frees
them the moment the batch is dropped; the collector just never walks them.

Only objects of a GC type are touched (anything else is returned unchanged).
"""

cdef extern from "Python.h":
    bint PyObject_IS_GC(object obj)
    void PyObject_GC_UnTrack(void *obj)


def untrack(obj):
    """Stop the cyclic GC from tracking ``obj``; returns ``obj``."""
    if PyObject_IS_GC(obj):
        PyObject_GC_UnTrack(<void *>obj)
    return obj

