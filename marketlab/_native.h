/* What the compiled module's source files share (marketlab/_native.c defines the module). */
#ifndef MARKETLAB_NATIVE_H
#define MARKETLAB_NATIVE_H
#include <Python.h>

/* _native_binance.c: Binance combined frames */
PyObject *route_combined(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *take_combined(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
int native_binance_init(PyObject *module);

#endif
