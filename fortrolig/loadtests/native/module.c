/*
 * The load generator's native participant (Python module fortrolig.loadtests._loadpath): the
 * per-packet work of a synthetic participant without the Python interpreter. aiortc and aioice
 * still do ICE and DTLS; once DTLS is up, Python hands the nominated socket and aiortc's SRTP
 * sessions to a Peer (fortrolig/loadtests/native.py), as the SFU's data plane does
 * (fortrolig/media/aiortc_hooks.py, fortrolig/media/native/transport.c).
 *
 *   module.c  init() binding libsrtp, Engine: one epoll descriptor for the event loop with every
 *             peer's socket and a timerfd for pacing in it.
 *   peer.c    Peer (socket, sessions, senders, received streams) and Clip (encoded frames).
 *   send.c    pacing, RTP packetisation (VP8 payload descriptor, Opus), sequence numbers and
 *             timestamps, SRTP protect, sendmmsg, sender reports.
 *   recv.c    recvmmsg, SRTP unprotect, counting packets, bytes, frames (marker bit and
 *             timestamp change), loss, jitter and freezes without depacketising; RTCP
 *             keyframe requests and round-trip times.
 *   stats.c   Peer.stats().
 *
 * Everything runs on the event loop's thread with the GIL held (the Engine is the loop's
 * reader), so there is no lock: Python's own uses of the SRTP sessions (aiortc's RTCP, DTLS)
 * never run at the same time. Every length read from a datagram is checked before it is used.
 */
#include "loadpath.h"

#include <dlfcn.h>
#include <link.h>

srtp_fn lp_protect = NULL, lp_unprotect = NULL, lp_protect_rtcp = NULL, lp_unprotect_rtcp = NULL;

void ntp_now(uint32_t *sec, uint32_t *frac) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    *sec = (uint32_t)((unsigned long long)ts.tv_sec + NTP_EPOCH_OFFSET);
    *frac = (uint32_t)(((unsigned long long)ts.tv_nsec << 32) / 1000000000ULL);
}

uint32_t ntp_middle_now(void) {
    uint32_t sec, frac;
    ntp_now(&sec, &frac);
    return (sec << 16) | (frac >> 16);
}

/* ------------------------------------------------------------------------------------------
 * Engine
 * ---------------------------------------------------------------------------------------- */

#define TIMER_KEY 0 /* epoll data of the timerfd (peers use their address) */

static int engine_index(EngineObject *e, PeerObject *p) {
    for (int i = 0; i < e->npeers; i++)
        if (e->peers[i] == p) return i;
    return -1;
}

static void engine_arm(EngineObject *e, double at) {
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    if (at < 1e-3) at = 1e-3; /* 0 would disarm */
    its.it_value.tv_sec = (time_t)at;
    its.it_value.tv_nsec = (long)((at - (double)(time_t)at) * 1e9);
    timerfd_settime(e->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
    e->armed_at = at;
}

static void engine_tick(EngineObject *e) {
    double now = mono_now();
    double next = now + 3600.0;
    e->ticks++;
    for (int i = 0; i < e->npeers; i++) {
        PeerObject *p = e->peers[i];
        double due = peer_send_due(p, now, &e->sendmmsg_calls);
        if (due < next) next = due;
    }
    engine_arm(e, next);
}

static int draining = 0; /* the receive and send buffers are static: no re-entry */

static PyObject *Engine_on_readable(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    struct epoll_event ev[64];
    if (draining || self->epfd < 0) Py_RETURN_NONE;
    draining = 1;
    Py_INCREF(self);
    self->wakeups++;
    int n = epoll_wait(self->epfd, ev, 64, 0);
    for (int i = 0; i < n; i++) {
        if (ev[i].data.u64 == TIMER_KEY) {
            uint64_t expirations;
            if (read(self->timerfd, &expirations, sizeof(expirations)) < 0) { /* EAGAIN */ }
            engine_tick(self);
            continue;
        }
        PeerObject *p = (PeerObject *)ev[i].data.ptr;
        if (engine_index(self, p) >= 0) peer_drain(p); /* a fallback may have removed it */
    }
    Py_DECREF(self);
    draining = 0;
    Py_RETURN_NONE;
}

static PyObject *Engine_add(EngineObject *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &PeerType)) {
        PyErr_SetString(PyExc_TypeError, "a Peer");
        return NULL;
    }
    PeerObject *p = (PeerObject *)arg;
    if (p->engine != NULL || p->closed || p->fd < 0 || self->epfd < 0) {
        PyErr_SetString(PyExc_ValueError, "the peer is closed or already in an engine");
        return NULL;
    }
    if (self->npeers == self->cap) {
        int cap = self->cap ? self->cap * 2 : 16;
        PeerObject **grown = PyMem_Realloc(self->peers, sizeof(PeerObject *) * (size_t)cap);
        if (grown == NULL) return PyErr_NoMemory();
        self->peers = grown;
        self->cap = cap;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, p->fd, &ev) < 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_INCREF(p);
    self->peers[self->npeers++] = p;
    p->engine = self;
    p->paused = self->paused;
    engine_arm(self, mono_now()); /* its senders start now */
    Py_RETURN_NONE;
}

static void engine_forget(EngineObject *self, int i) {
    PeerObject *p = self->peers[i];
    if (p->fd >= 0) epoll_ctl(self->epfd, EPOLL_CTL_DEL, p->fd, NULL);
    self->peers[i] = self->peers[--self->npeers];
    p->engine = NULL;
    Py_DECREF(p);
}

static PyObject *Engine_remove(EngineObject *self, PyObject *arg) {
    int i = engine_index(self, (PeerObject *)arg);
    if (i >= 0) engine_forget(self, i);
    Py_RETURN_NONE;
}

static PyObject *Engine_set_paused(EngineObject *self, PyObject *arg) {
    int v = PyObject_IsTrue(arg);
    if (v < 0) return NULL;
    self->paused = v;
    for (int i = 0; i < self->npeers; i++) self->peers[i]->paused = v;
    Py_RETURN_NONE;
}

static PyObject *Engine_close(EngineObject *self, PyObject *Py_UNUSED(ignored)) {
    while (self->npeers > 0) engine_forget(self, self->npeers - 1);
    if (self->epfd >= 0) close(self->epfd);
    if (self->timerfd >= 0) close(self->timerfd);
    self->epfd = self->timerfd = -1;
    Py_RETURN_NONE;
}

static int Engine_init(EngineObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "", names)) return -1;
    if (self->epfd >= 0) return 0;
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    self->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (self->epfd < 0 || self->timerfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TIMER_KEY};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, self->timerfd, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static int Engine_traverse(EngineObject *self, visitproc visit, void *arg) {
    for (int i = 0; i < self->npeers; i++) Py_VISIT(self->peers[i]);
    return 0;
}

static int Engine_clear(EngineObject *self) {
    while (self->npeers > 0) engine_forget(self, self->npeers - 1);
    return 0;
}

static void Engine_dealloc(EngineObject *self) {
    PyObject_GC_UnTrack(self);
    Engine_clear(self);
    PyMem_Free(self->peers);
    if (self->epfd >= 0) close(self->epfd);
    if (self->timerfd >= 0) close(self->timerfd);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Engine_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    EngineObject *self = (EngineObject *)type->tp_alloc(type, 0);
    if (self != NULL) self->epfd = self->timerfd = -1;
    return (PyObject *)self;
}

static PyMethodDef Engine_methods[] = {
    {"on_readable", (PyCFunction)Engine_on_readable, METH_NOARGS,
     "Handle what is ready: due frames (timer) and waiting datagrams (the loop's reader)."},
    {"add", (PyCFunction)Engine_add, METH_O, "Read this peer's socket and pace its senders."},
    {"remove", (PyCFunction)Engine_remove, METH_O, "Stop handling this peer; idempotent."},
    {"set_paused", (PyCFunction)Engine_set_paused, METH_O, "Pause (True) or resume every sender."},
    {"close", (PyCFunction)Engine_close, METH_NOARGS, "Remove every peer, close; idempotent."},
    {NULL}};

static PyMemberDef Engine_members[] = {
    {"fd", T_INT, offsetof(EngineObject, epfd), READONLY, "the epoll descriptor to watch"},
    {"peers", T_INT, offsetof(EngineObject, npeers), READONLY, "peers handled"},
    {"wakeups", T_ULONGLONG, offsetof(EngineObject, wakeups), READONLY, "on_readable calls"},
    {"ticks", T_ULONGLONG, offsetof(EngineObject, ticks), READONLY, "pacing timer expiries"},
    {"sendmmsg_calls", T_ULONGLONG, offsetof(EngineObject, sendmmsg_calls), READONLY,
     "sendmmsg system calls"},
    {NULL}};

PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fortrolig.loadtests._loadpath.Engine",
    .tp_basicsize = sizeof(EngineObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Engine(): the peers of one worker process behind one pollable descriptor.",
    .tp_new = Engine_new,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_traverse = (traverseproc)Engine_traverse,
    .tp_clear = (inquiry)Engine_clear,
    .tp_methods = Engine_methods,
    .tp_members = Engine_members,
};

/* ------------------------------------------------------------------------------------------
 * Module
 * ---------------------------------------------------------------------------------------- */

struct found_lib {
    const char *needle;
    char path[4096];
};

static int find_library(struct dl_phdr_info *info, size_t size, void *data) {
    struct found_lib *f = data;
    if (info->dlpi_name != NULL && strstr(info->dlpi_name, f->needle) != NULL &&
        strlen(info->dlpi_name) < sizeof(f->path)) {
        strcpy(f->path, info->dlpi_name);
        return 1;
    }
    return 0;
}

/* Bind libsrtp's entry points from the library pylibsrtp already loaded (its _binding
 * extension links libsrtp statically and exports the symbols): one key schedule and one replay
 * window per direction, shared with aiortc's own SRTCP and DTLS-driven use of the sessions. */
static PyObject *mod_init(PyObject *m, PyObject *Py_UNUSED(ignored)) {
    struct found_lib f = {.needle = "pylibsrtp/_binding", .path = ""};
    if (!dl_iterate_phdr(find_library, &f)) {
        PyErr_SetString(PyExc_RuntimeError, "pylibsrtp is not loaded: import it first");
        return NULL;
    }
    void *lib = dlopen(f.path, RTLD_LAZY | RTLD_NOLOAD);
    if (lib == NULL) {
        PyErr_Format(PyExc_RuntimeError, "cannot open %s", f.path);
        return NULL;
    }
    srtp_fn fns[4];
    const char *names[4] = {"srtp_protect", "srtp_unprotect", "srtp_protect_rtcp",
                            "srtp_unprotect_rtcp"};
    for (int i = 0; i < 4; i++) {
        fns[i] = (srtp_fn)dlsym(lib, names[i]);
        if (fns[i] == NULL) {
            dlclose(lib);
            PyErr_Format(PyExc_RuntimeError, "%s does not export %s", f.path, names[i]);
            return NULL;
        }
    }
    /* the reference dlopen took stays: the library must outlive our pointers into it */
    lp_protect = fns[0];
    lp_unprotect = fns[1];
    lp_protect_rtcp = fns[2];
    lp_unprotect_rtcp = fns[3];
    Py_RETURN_NONE;
}

/* The receive path's header check on its own, for tests: (payload offset, payload length),
 * or None when the header lies about a length. */
static PyObject *mod_rtp_header(PyObject *m, PyObject *arg) {
    Py_buffer b;
    RtpInfo r;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    int bad = b.len > BUF_SIZE || rtp_header(b.buf, (int)b.len, &r) != 0;
    PyBuffer_Release(&b);
    if (bad) Py_RETURN_NONE;
    return Py_BuildValue("(ii)", r.payload, r.payload_len);
}

static PyMethodDef module_methods[] = {
    {"init", mod_init, METH_NOARGS,
     "Bind libsrtp from the copy pylibsrtp loaded (import pylibsrtp first)."},
    {"rtp_header", mod_rtp_header, METH_O, "(payload offset, length) of plaintext RTP, or None."},
    {NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_loadpath",
                                        "The load generator's native participant.", -1,
                                        module_methods};

PyMODINIT_FUNC PyInit__loadpath(void) {
    if (PyType_Ready(&ClipType) < 0 || PyType_Ready(&PeerType) < 0 ||
        PyType_Ready(&EngineType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    PyObject *types[3] = {(PyObject *)&ClipType, (PyObject *)&PeerType, (PyObject *)&EngineType};
    const char *names[3] = {"Clip", "Peer", "Engine"};
    for (int i = 0; i < 3; i++) {
        Py_INCREF(types[i]);
        if (PyModule_AddObject(m, names[i], types[i]) < 0) {
            Py_DECREF(types[i]);
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
