/*
 * The SFU's native data plane (Python module fortrolig.media._fastpath): per-datagram work
 * without the Python interpreter.
 *
 * Python decides everything that happens rarely (negotiation, RTCP feedback, keyframe-request
 * rate limits, sender reports); these files do what happens for every media packet:
 *
 *   transport.c  Transport: one peer's socket (our dup of aioice's) and its SRTP sessions. It
 *                drains the socket with recvmmsg; SRTP-protected RTP of a routed SSRC is
 *                unprotected and handed to its Track; anything else (STUN, DTLS, SRTCP,
 *                unknown SSRCs) goes to a Python fallback unchanged.
 *   track.c      Track: one published stream: RTX unwrap, receive statistics (RFC 3550),
 *                missing-packet tracking for NACKs, keyframe detection, fan-out.
 *   leg.c        Leg: one subscriber of a track: keyframe gate, SSRC / sequence / timestamp /
 *                payload type / header-extension rewrite, a packet cache answering NACKs over
 *                RTX, SRTP protect and sendto.
 *   pump.c       Pump: an optional native thread reading every transport's socket with its
 *                own epoll, without the GIL; what Python must see is queued for the event loop.
 *   rtp.c        RTP header parsing and keyframe detection (VP8, H.264).
 *   counters.c   Counters shared by the objects of one SFU.
 *
 * SRTP uses the very libsrtp sessions aiortc created (pylibsrtp's srtp_t and its exported
 * srtp_protect / srtp_unprotect), so there is one replay window and one key schedule per
 * direction.
 *
 * Locking: one recursive lock (plane_lock) guards all data-plane state of the process. The
 * pump thread holds it while it handles a wake-up's datagrams; every Python entry point that
 * reads or changes shared state takes it too, and so do Python's own uses of the SRTP sessions
 * (aiortc_hooks.LockedSrtp through locked_call). It is recursive because inline-mode callbacks
 * into Python may call back into locked methods. The pump thread never takes the GIL and never
 * touches a reference count; Python entry points wait for the lock with the GIL released.
 *
 * Every length is checked before it is read: the input is attacker-controlled.
 */
#include "dataplane.h"

srtp_fn srtp_protect_fn = NULL;
srtp_fn srtp_unprotect_fn = NULL;
srtp_fn srtp_unprotect_rtcp_fn = NULL;
pthread_mutex_t plane_lock;
__thread int lock_depth;
uint8_t rx_bufs[RECV_BATCH][BUF_SIZE];
uint8_t tx_buf[BUF_SIZE];

/* ------------------------------------------------------------------------------------------
 * Module
 * ---------------------------------------------------------------------------------------- */

static PyObject *mod_init(PyObject *m, PyObject *args) {
    unsigned long long protect, unprotect, unprotect_rtcp;
    if (!PyArg_ParseTuple(args, "KKK", &protect, &unprotect, &unprotect_rtcp)) return NULL;
    if (protect == 0 || unprotect == 0 || unprotect_rtcp == 0) {
        PyErr_SetString(PyExc_ValueError, "null libsrtp function");
        return NULL;
    }
    srtp_protect_fn = (srtp_fn)(uintptr_t)protect;
    srtp_unprotect_fn = (srtp_fn)(uintptr_t)unprotect;
    srtp_unprotect_rtcp_fn = (srtp_fn)(uintptr_t)unprotect_rtcp;
    Py_RETURN_NONE;
}

/* Call ``fn(arg)`` holding the data-plane lock: Python's own uses of the SRTP sessions (SRTCP,
 * the first packet of a stream) must not run while the pump thread uses them. */
static PyObject *mod_locked_call(PyObject *m, PyObject *args) {
    PyObject *fn, *arg;
    if (!PyArg_ParseTuple(args, "OO", &fn, &arg)) return NULL;
    LOCK_PY();
    PyObject *res = PyObject_CallOneArg(fn, arg);
    UNLOCK_PY();
    return res;
}

static PyObject *mod_keyframe(PyObject *m, PyObject *args) {
    int codec;
    Py_buffer b;
    if (!PyArg_ParseTuple(args, "iy*", &codec, &b)) return NULL;
    int r = codec == KF_VP8 ? vp8_keyframe_start(b.buf, b.len)
            : codec == KF_H264 ? h264_keyframe_start(b.buf, b.len) : 0;
    PyBuffer_Release(&b);
    return PyBool_FromLong(r);
}

static PyMethodDef module_methods[] = {
    {"init", mod_init, METH_VARARGS,
     "init(protect, unprotect, unprotect_rtcp): addresses of pylibsrtp's libsrtp functions."},
    {"locked_call", mod_locked_call, METH_VARARGS,
     "locked_call(fn, arg): fn(arg) while holding the data-plane lock."},
    {"is_keyframe_start", mod_keyframe, METH_VARARGS,
     "is_keyframe_start(codec, payload): does this RTP payload begin a keyframe?"},
    {NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath",
    "Native per-packet data plane of the SFU (see fortrolig/media/fastpath.py).", -1,
    module_methods};

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyTypeObject *types[] = {&CountersType, &TransportType, &TrackType, &LegType, &PumpType};
    const char *names[] = {"Counters", "Transport", "Track", "Leg", "Pump"};
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&plane_lock, &attr);
    pthread_mutexattr_destroy(&attr);
    for (int i = 0; i < 5; i++)
        if (PyType_Ready(types[i]) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    for (int i = 0; i < 5; i++) {
        Py_INCREF(types[i]);
        if (PyModule_AddObject(m, names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(types[i]);
            Py_DECREF(m);
            return NULL;
        }
    }
    PyModule_AddIntConstant(m, "KEYFRAME_NONE", KF_NONE);
    PyModule_AddIntConstant(m, "KEYFRAME_VP8", KF_VP8);
    PyModule_AddIntConstant(m, "KEYFRAME_H264", KF_H264);
    PyModule_AddIntConstant(m, "CACHE_SIZE", CACHE_SIZE);
    PyModule_AddIntConstant(m, "RING_SIZE", RING_SIZE);
    return m;
}
