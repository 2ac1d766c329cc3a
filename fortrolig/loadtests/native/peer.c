/* Peer: one synthetic participant's bundled UDP socket, its SRTP sessions, its two paced
 * senders and what it received; Clip: a pre-encoded clip of one kind. */
#include "loadpath.h"

/* ------------------------------------------------------------------------------------------
 * Clip
 * ---------------------------------------------------------------------------------------- */

static int Clip_init(ClipObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"video", "frames", "keyframes", "step", "period", "jitter", NULL};
    int video, step;
    double period;
    PyObject *frames, *keyframes, *jitter;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "pO!O!idO!", names, &video, &PyList_Type, &frames,
                                     &PyList_Type, &keyframes, &step, &period, &PyList_Type,
                                     &jitter))
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(frames), nj = PyList_GET_SIZE(jitter);
    if (self->data != NULL || n < 1 || n > 1000000 || PyList_GET_SIZE(keyframes) != n ||
        step <= 0 || period <= 0 || nj > 100000) {
        PyErr_SetString(PyExc_ValueError, "bad clip");
        return -1;
    }
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyList_GET_ITEM(frames, i);
        if (!PyBytes_Check(f) || PyBytes_GET_SIZE(f) < 1 ||
            PyBytes_GET_SIZE(f) > (video ? 1000000 : MAX_RTP - 64)) {
            PyErr_SetString(PyExc_ValueError, "clip frames must be non-empty bytes of sane size");
            return -1;
        }
        total += PyBytes_GET_SIZE(f);
    }
    self->data = PyMem_Malloc((size_t)total);
    self->offset = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n + 1));
    self->keyframe = PyMem_Malloc((size_t)n);
    self->jitter = PyMem_Malloc(sizeof(int) * (size_t)(nj + 1));
    if (!self->data || !self->offset || !self->keyframe || !self->jitter) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyList_GET_ITEM(frames, i);
        self->offset[i] = at;
        memcpy(self->data + at, PyBytes_AS_STRING(f), (size_t)PyBytes_GET_SIZE(f));
        at += PyBytes_GET_SIZE(f);
        self->keyframe[i] = (uint8_t)PyObject_IsTrue(PyList_GET_ITEM(keyframes, i));
    }
    self->offset[n] = at;
    for (Py_ssize_t i = 0; i < nj; i++) {
        long v = PyLong_AsLong(PyList_GET_ITEM(jitter, i));
        if (v < 0 || v > 100000) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad jitter");
            return -1;
        }
        self->jitter[i] = (int)v;
    }
    self->video = video;
    self->nframes = (int)n;
    self->njitter = (int)nj;
    self->step = step;
    self->period = period;
    return 0;
}

static void Clip_dealloc(ClipObject *self) {
    PyMem_Free(self->data);
    PyMem_Free(self->offset);
    PyMem_Free(self->keyframe);
    PyMem_Free(self->jitter);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef Clip_members[] = {
    {"frames", T_INT, offsetof(ClipObject, nframes), READONLY, "frames in the clip"},
    {"video", T_INT, offsetof(ClipObject, video), READONLY, "1 for VP8, 0 for Opus"},
    {NULL}};

PyTypeObject ClipType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fortrolig.loadtests._loadpath.Clip",
    .tp_basicsize = sizeof(ClipObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Clip(video, frames, keyframes, step, period, jitter): encoded frames to replay.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Clip_init,
    .tp_dealloc = (destructor)Clip_dealloc,
    .tp_members = Clip_members,
};

/* ------------------------------------------------------------------------------------------
 * Peer
 * ---------------------------------------------------------------------------------------- */

static int parse_address(PyObject *host, int port, struct sockaddr_storage *out,
                         socklen_t *len) {
    const char *h = PyUnicode_AsUTF8(host);
    if (h == NULL) return -1;
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, h, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, h, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*v6);
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "not an IP address: %s", h);
    return -1;
}

static PyObject *address_tuple(const struct sockaddr_storage *a) {
    char host[INET6_ADDRSTRLEN] = "";
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)a;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
        return Py_BuildValue("(si)", host, ntohs(v4->sin_port));
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)a;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
        return Py_BuildValue("(siIk)", host, ntohs(v6->sin6_port), ntohl(v6->sin6_flowinfo),
                             (unsigned long)v6->sin6_scope_id);
    }
    return Py_BuildValue("(si)", host, 0);
}

void call_fallback(PeerObject *p, const uint8_t *d, int n, const struct sockaddr_storage *from) {
    if (p->fallback == NULL) return;
    PyObject *data = PyBytes_FromStringAndSize((const char *)d, n);
    PyObject *addr = data ? address_tuple(from) : NULL;
    if (data != NULL && addr != NULL) {
        PyObject *res = PyObject_CallFunctionObjArgs(p->fallback, data, addr, NULL);
        if (res == NULL) PyErr_WriteUnraisable(p->fallback);
        Py_XDECREF(res);
    } else {
        PyErr_Clear();
    }
    Py_XDECREF(data);
    Py_XDECREF(addr);
}

static int Peer_init(PeerObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"fd", "remote_host", "remote_port", "rx", "tx", "keep", "fallback",
                            NULL};
    int fd, port;
    PyObject *host, *keep, *fallback;
    unsigned long long rx, tx;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iUiKKOO", names, &fd, &host, &port, &rx, &tx,
                                     &keep, &fallback))
        return -1;
    if (lp_protect == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "init() was not called");
        return -1;
    }
    if (self->fd >= 0 || rx == 0 || tx == 0 || port <= 0 || port > 65535 ||
        !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_ValueError, "bad peer parameters");
        return -1;
    }
    if (parse_address(host, port, &self->remote, &self->remote_len) < 0) return -1;
    self->fd = dup(fd); /* ours to close; aioice keeps (and later closes) its own */
    if (self->fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->rx = (void *)(uintptr_t)rx;
    self->tx = (void *)(uintptr_t)tx;
    Py_INCREF(keep);
    Py_XSETREF(self->keep, keep);
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    self->rtt = -1;
    return 0;
}

static PyObject *Peer_set_sender(PeerObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"clip", "ssrc", "payload_type", "mid_id", "mid", "seq", "ts_base",
                            NULL};
    PyObject *clip;
    unsigned int ssrc, seq, ts_base;
    int pt, mid_id;
    Py_buffer mid;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!Iiiy*II", names, &ClipType, &clip, &ssrc, &pt,
                                     &mid_id, &mid, &seq, &ts_base))
        return NULL;
    int bad = pt < 0 || pt > 127 || mid_id < 0 || mid_id > 14 || mid.len > 16 || ssrc == 0;
    int len = (int)mid.len;
    uint8_t mid_bytes[16];
    if (!bad) memcpy(mid_bytes, mid.buf, (size_t)len);
    PyBuffer_Release(&mid);
    if (bad || self->closed) {
        PyErr_SetString(PyExc_ValueError, "bad sender parameters (or the peer is closed)");
        return NULL;
    }
    ClipObject *c = (ClipObject *)clip;
    Sender *s = &self->senders[c->video ? 1 : 0];
    sender_reset(s);
    Py_INCREF(clip);
    s->clip = c;
    s->ssrc = ssrc;
    s->pt = pt;
    s->clock = c->video ? 90000 : 48000;
    s->seq = (uint16_t)seq;
    s->ts_base = ts_base;
    s->mid_id = len > 0 ? mid_id : 0;
    s->mid_len = len;
    memcpy(s->mid, mid_bytes, (size_t)len);
    s->start = mono_now();
    s->next_sr = s->start + SR_INTERVAL_S;
    s->keyframe_wanted = c->video; /* begin on a keyframe, as an encoder does */
    Py_RETURN_NONE;
}

static PyObject *Peer_set_payload_types(PeerObject *self, PyObject *args) {
    PyObject *lists[3];
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyList_Type, &lists[0], &PyList_Type, &lists[1],
                          &PyList_Type, &lists[2]))
        return NULL;
    uint8_t table[128] = {0};
    for (int k = 0; k < 3; k++) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lists[k]); i++) {
            long pt = PyLong_AsLong(PyList_GET_ITEM(lists[k], i));
            if (pt < 0 || pt > 127) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad payload type");
                return NULL;
            }
            table[pt] = (uint8_t)(k + 1); /* K_AUDIO, K_VIDEO, K_RTX */
        }
    }
    memcpy(self->pt_kind, table, sizeof(table));
    Py_RETURN_NONE;
}

static PyObject *Peer_request_keyframe(PeerObject *self, PyObject *Py_UNUSED(ignored)) {
    self->senders[1].keyframe_wanted = self->senders[1].clip != NULL;
    Py_RETURN_NONE;
}

static PyObject *Peer_set_paused(PeerObject *self, PyObject *arg) {
    int v = PyObject_IsTrue(arg);
    if (v < 0) return NULL;
    self->paused = v;
    Py_RETURN_NONE;
}

/* Hand one datagram to the receive path as if it had been read from the socket (tests). */
static PyObject *Peer_feed(PeerObject *self, PyObject *arg) {
    Py_buffer b;
    uint8_t buf[BUF_SIZE];
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    struct sockaddr_storage from = self->remote;
    if (b.len > BUF_SIZE) {
        self->rc.datagrams++;
        self->rc.malformed++; /* what recvmmsg would have truncated */
    } else {
        memcpy(buf, b.buf, (size_t)b.len);
        Py_INCREF(self);
        peer_datagram(self, buf, (int)b.len, &from, mono_now());
        Py_DECREF(self);
    }
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

/* A video stall still running at ``end`` is a freeze too (as probe.RecvStats.close_window). */
static PyObject *Peer_close_window(PeerObject *self, PyObject *arg) {
    double end = PyFloat_AsDouble(arg);
    if (end == -1.0 && PyErr_Occurred()) return NULL;
    for (int i = 0; i < self->nstreams; i++) {
        Stream *s = &self->streams[i];
        if (s->kind == K_VIDEO && s->frames > 0 && end - s->last_frame_at > FREEZE_GAP_S) {
            s->freezes++;
            s->freeze_s += end - s->last_frame_at;
            s->last_frame_at = end;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *Peer_first_frame_at(PeerObject *self, PyObject *Py_UNUSED(ignored)) {
    double first = 0;
    for (int i = 0; i < self->nstreams; i++) {
        Stream *s = &self->streams[i];
        if (s->kind == K_VIDEO && s->frames > 0 && (first == 0 || s->first_frame_at < first))
            first = s->first_frame_at;
    }
    if (first == 0) Py_RETURN_NONE;
    return PyFloat_FromDouble(first);
}

static PyObject *Peer_close(PeerObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->engine != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "remove the peer from its engine first");
        return NULL;
    }
    self->closed = 1;
    if (self->fd >= 0) close(self->fd);
    self->fd = -1;
    self->rx = self->tx = NULL;
    sender_reset(&self->senders[0]);
    sender_reset(&self->senders[1]);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->keep);
    Py_RETURN_NONE;
}

static int Peer_traverse(PeerObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->keep);
    Py_VISIT(self->fallback);
    Py_VISIT(self->senders[0].clip);
    Py_VISIT(self->senders[1].clip);
    return 0;
}

static int Peer_clear(PeerObject *self) {
    Py_CLEAR(self->keep);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->senders[0].clip);
    Py_CLEAR(self->senders[1].clip);
    return 0;
}

static void Peer_dealloc(PeerObject *self) {
    PyObject_GC_UnTrack(self);
    if (self->fd >= 0) close(self->fd);
    Peer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Peer_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PeerObject *self = (PeerObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->fd = -1;
        self->rtt = -1;
    }
    return (PyObject *)self;
}

PyObject *peer_stats(PeerObject *self, PyObject *Py_UNUSED(ignored)); /* stats.c */

static PyMethodDef Peer_methods[] = {
    {"set_sender", (PyCFunction)(void (*)(void))Peer_set_sender, METH_VARARGS | METH_KEYWORDS,
     "Start pacing a clip: set_sender(clip, ssrc, payload_type, mid_id, mid, seq, ts_base)."},
    {"set_payload_types", (PyCFunction)Peer_set_payload_types, METH_VARARGS,
     "set_payload_types(audio, video, rtx): which received payload types are which."},
    {"request_keyframe", (PyCFunction)Peer_request_keyframe, METH_NOARGS,
     "Make the next video frame the clip's next keyframe."},
    {"set_paused", (PyCFunction)Peer_set_paused, METH_O, "Stop (True) or resume sending."},
    {"feed", (PyCFunction)Peer_feed, METH_O, "Handle one datagram as if read from the socket."},
    {"close_window", (PyCFunction)Peer_close_window, METH_O,
     "End the measurement at this monotonic time (a stall still running is a freeze)."},
    {"first_frame_at", (PyCFunction)Peer_first_frame_at, METH_NOARGS,
     "Monotonic time of the first remote video frame, or None."},
    {"stats", (PyCFunction)peer_stats, METH_NOARGS, "Counters, senders and streams (a dict)."},
    {"close", (PyCFunction)Peer_close, METH_NOARGS, "Close our descriptor; idempotent."},
    {NULL}};

static PyMemberDef Peer_members[] = {
    {"fd", T_INT, offsetof(PeerObject, fd), READONLY, "our descriptor of the socket (-1: closed)"},
    {"closed", T_INT, offsetof(PeerObject, closed), READONLY, "closed"},
    {"rtt", T_DOUBLE, offsetof(PeerObject, rtt), READONLY, "round-trip time (s), -1: unknown"},
    {NULL}};

PyTypeObject PeerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fortrolig.loadtests._loadpath.Peer",
    .tp_basicsize = sizeof(PeerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Peer(fd, remote_host, remote_port, rx, tx, keep, fallback): one participant.",
    .tp_new = Peer_new,
    .tp_init = (initproc)Peer_init,
    .tp_dealloc = (destructor)Peer_dealloc,
    .tp_traverse = (traverseproc)Peer_traverse,
    .tp_clear = (inquiry)Peer_clear,
    .tp_methods = Peer_methods,
    .tp_members = Peer_members,
};
