/* Counters: media-path totals shared by the objects of one SFU. */
#include "dataplane.h"

/* ------------------------------------------------------------------------------------------
 * Counters: totals since start, shared by every object of one SFU, read at scrape time.
 * ---------------------------------------------------------------------------------------- */


#define COUNTER(name, doc) {#name, T_ULONGLONG, offsetof(CountersObject, name), 0, doc}
static PyMemberDef Counters_members[] = {
    COUNTER(ingress_packets, "RTP packets accepted from publishers"),
    COUNTER(forwarded_packets, "RTP packets sent to subscribers"),
    COUNTER(forwarded_bytes, "bytes on the wire sent to subscribers"),
    COUNTER(gated_drops, "packets held back until a keyframe"),
    COUNTER(rtx_received, "retransmissions received from publishers"),
    COUNTER(rtx_discarded, "retransmissions filling no gap (duplicates, probes, garbled)"),
    COUNTER(unknown_payload_type, "packets with a payload type not negotiated"),
    COUNTER(srtp_failures, "datagrams failing SRTP authentication or replay check"),
    COUNTER(retransmitted, "packets resent to subscribers over RTX"),
    COUNTER(nack_unanswered, "NACKed packets no longer in the cache"),
    COUNTER(nack_given_up, "packets asked of a publisher 5 times without an answer"),
    COUNTER(malformed, "RTP packets with an impossible header"),
    COUNTER(send_errors, "sendto failures (socket buffer full, network down)"),
    COUNTER(native_datagrams, "media datagrams handled without Python"),
    COUNTER(rtcp_received, "RTCP (compound) packets received and handled"),
    COUNTER(nack_received, "NACK messages received from subscribers"),
    COUNTER(pli_received, "PLI keyframe requests received from subscribers"),
    COUNTER(fir_received, "FIR keyframe requests received from subscribers"),
    COUNTER(remb_received, "REMB bandwidth estimates received from subscribers"),
    {NULL}};

/* Add to a counter under the lock (Python's own increments race the pump thread otherwise). */
static PyObject *Counters_increment(CountersObject *self, PyObject *args) {
    const char *name;
    unsigned long long n = 1;
    if (!PyArg_ParseTuple(args, "s|K", &name, &n)) return NULL;
    for (PyMemberDef *m = Counters_members; m->name != NULL; m++) {
        if (strcmp(m->name, name) == 0) {
            LOCK_PY();
            *(unsigned long long *)((char *)self + m->offset) += n;
            UNLOCK_PY();
            Py_RETURN_NONE;
        }
    }
    PyErr_Format(PyExc_KeyError, "no counter %s", name);
    return NULL;
}

static PyMethodDef Counters_methods[] = {
    {"increment", (PyCFunction)Counters_increment, METH_VARARGS,
     "increment(name, n=1): add to a counter safely while an I/O thread runs."},
    {NULL}};

PyTypeObject CountersType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fortrolig.media._fastpath.Counters",
    .tp_basicsize = sizeof(CountersObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Media-path counters maintained by the native data plane.",
    .tp_new = PyType_GenericNew,
    .tp_members = Counters_members,
    .tp_methods = Counters_methods,
};

