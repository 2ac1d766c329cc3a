/* Transport: one peer's bundled UDP socket and its SRTP sessions. */
#include "dataplane.h"

/* Protect in place and send; returns bytes on the wire, 0 when nothing was sent. */
int transport_send(TransportObject *t, uint8_t *buf, int len) {
    if (t->closed || t->fd < 0 || t->tx == NULL) return 0;
    int n = len;
    if (srtp_protect_fn(t->tx, buf, &n) != 0) {
        t->counters->send_errors++;
        return 0;
    }
    ssize_t sent = sendto(t->fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&t->remote,
                          t->remote_len);
    if (sent < 0) {
        t->counters->send_errors++;
        return 0;
    }
    return n;
}

/* ------------------------------------------------------------------------------------------
 * Transport
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
    char host[INET6_ADDRSTRLEN];
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)a;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
        return Py_BuildValue("(si)", host, ntohs(v4->sin_port));
    }
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)a;
    inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
    return Py_BuildValue("(siIk)", host, ntohs(v6->sin6_port), ntohl(v6->sin6_flowinfo),
                         (unsigned long)v6->sin6_scope_id);
}

static int Transport_init(TransportObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"fd", "remote_host", "remote_port", "rx", "tx", "keep", "fallback",
                            "counters", NULL};
    int fd, port;
    PyObject *host, *keep, *fallback, *counters;
    unsigned long long rx, tx;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iUiKKOOO!", names, &fd, &host, &port, &rx, &tx,
                                     &keep, &fallback, &CountersType, &counters))
        return -1;
    if (srtp_protect_fn == NULL || srtp_unprotect_fn == NULL || srtp_unprotect_rtcp_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "init() was not called");
        return -1;
    }
    if (rx == 0 || tx == 0 || port <= 0 || port > 65535 || !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_ValueError, "bad transport parameters");
        return -1;
    }
    if (parse_address(host, port, &self->remote, &self->remote_len) < 0) return -1;
    if (self->fd >= 0) close(self->fd);
    self->fd = dup(fd);
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
    Py_INCREF(counters);
    Py_XSETREF(self->counters, (CountersObject *)counters);
    return 0;
}

void call_fallback(TransportObject *self, const uint8_t *d, int n,
                          const struct sockaddr_storage *from) {
    if (self->fallback == NULL) return;
    PyObject *data = PyBytes_FromStringAndSize((const char *)d, n);
    PyObject *addr = data ? address_tuple(from) : NULL;
    if (data != NULL && addr != NULL) {
        PyObject *res = PyObject_CallFunctionObjArgs(self->fallback, data, addr, NULL);
        if (res == NULL) PyErr_WriteUnraisable(self->fallback);
        Py_XDECREF(res);
    } else {
        PyErr_Clear();
    }
    Py_XDECREF(data);
    Py_XDECREF(addr);
}

/* Drain the socket (lock held): media of a routed SSRC is handled here, everything else goes
 * to the Python fallback exactly as received (queued for it in pump mode). */
void transport_drain(TransportObject *self) {
    struct mmsghdr msgs[RECV_BATCH];
    struct iovec iov[RECV_BATCH];
    struct sockaddr_storage from[RECV_BATCH];
    int budget = DRAIN_MAX;
    while (budget > 0 && !self->closed) {
        int want = budget < RECV_BATCH ? budget : RECV_BATCH;
        for (int i = 0; i < want; i++) {
            iov[i].iov_base = rx_bufs[i];
            iov[i].iov_len = BUF_SIZE;
            memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
        }
        /* one system call for every datagram waiting (a video frame arrives as a burst) */
        int got = recvmmsg(self->fd, msgs, (unsigned int)want, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EINTR) continue;
            break; /* EAGAIN: drained */
        }
        budget -= got;
        for (int m = 0; m < got && !self->closed; m++) {
            uint8_t *d = rx_bufs[m];
            int n = (int)msgs[m].msg_len;
            if (msgs[m].msg_hdr.msg_flags & MSG_TRUNC) {
                self->counters->malformed++; /* larger than any datagram of ours: dropped */
                continue;
            }
            if (n >= 12 && d[0] >= 128 && d[0] < 192 && d[1] >= 192 && d[1] <= 223) {
                /* SRTCP: unprotected and handled here (feedback about our legs, SRs) */
                int len = n;
                if (srtp_unprotect_rtcp_fn(self->rx, d, &len) != 0) {
                    self->counters->srtp_failures++;
                    continue;
                }
                self->counters->native_datagrams++;
                transport_rtcp(self, d, len);
                continue;
            }
            if (n >= 12 && d[0] >= 128 && d[0] < 192) {
                uint32_t ssrc = rd32(d + 8);
                TrackObject *track = NULL;
                for (int i = 0; i < self->nroutes; i++) {
                    if (self->route_ssrc[i] == ssrc) {
                        track = self->route_track[i];
                        break;
                    }
                }
                if (track != NULL && n <= MAX_RTP + 64) {
                    int len = n;
                    if (srtp_unprotect_fn(self->rx, d, &len) != 0) {
                        self->counters->srtp_failures++;
                        continue;
                    }
                    self->counters->native_datagrams++;
                    track_ingest(track, d, len, self, ssrc);
                    continue;
                }
            }
            if (self->pump != NULL)
                pump_enqueue(self->pump, self, EV_FALLBACK, 0, d, n, &from[m]);
            else
                call_fallback(self, d, n, &from[m]);
        }
        if (got < want) break; /* the socket had no more */
    }
}

/* The event loop's reader callback (inline mode, GIL held). */
static PyObject *Transport_on_readable(TransportObject *self, PyObject *Py_UNUSED(ignored)) {
    Py_INCREF(self);
    LOCK_PY();
    transport_drain(self);
    UNLOCK_PY();
    Py_DECREF(self);
    Py_RETURN_NONE;
}

static PyObject *Transport_route(TransportObject *self, PyObject *args) {
    unsigned int ssrc;
    PyObject *track;
    if (!PyArg_ParseTuple(args, "IO!", &ssrc, &TrackType, &track)) return NULL;
    if (((TrackObject *)track)->counters == NULL || self->counters == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Track or Transport was not initialised");
        return NULL;
    }
    int ok = 0;
    TrackObject *old = NULL;
    LOCK_PY();
    if (!self->closed) {
        int i = 0;
        while (i < self->nroutes && self->route_ssrc[i] != ssrc) i++;
        if (i < MAX_ROUTES) { /* a full table leaves the SSRC on the Python path */
            old = i < self->nroutes ? self->route_track[i] : NULL;
            Py_INCREF(track);
            self->route_ssrc[i] = ssrc;
            self->route_track[i] = (TrackObject *)track;
            if (i == self->nroutes) self->nroutes++;
            ok = 1;
        }
    }
    UNLOCK_PY();
    Py_XDECREF(old);
    return PyBool_FromLong(ok);
}

static void transport_drop_routes(TransportObject *self) {
    int n = self->nroutes;
    self->nroutes = 0;
    for (int i = 0; i < n; i++) Py_CLEAR(self->route_track[i]);
    int m = self->nlegs_out;
    LegObject **legs = self->legs_out;
    self->nlegs_out = self->caplegs_out = 0;
    self->legs_out = NULL;
    for (int i = 0; i < m; i++) Py_DECREF(legs[i]);
    PyMem_Free(legs);
}

/* A leg now sends on this transport, so its peer's RTCP speaks of it (lock held). */
int transport_add_leg(TransportObject *t, LegObject *l) {
    for (int i = 0; i < t->nlegs_out; i++)
        if (t->legs_out[i] == l) return 0;
    if (t->nlegs_out == t->caplegs_out) {
        int cap = t->caplegs_out ? t->caplegs_out * 2 : 8;
        LegObject **grown = PyMem_Realloc(t->legs_out, sizeof(LegObject *) * (size_t)cap);
        if (grown == NULL) return -1;
        t->legs_out = grown;
        t->caplegs_out = cap;
    }
    Py_INCREF(l);
    t->legs_out[t->nlegs_out++] = l;
    return 0;
}

/* (lock held; the reference is released by the caller's later DECREF of the leg's owner) */
void transport_remove_leg(TransportObject *t, LegObject *l) {
    for (int i = 0; i < t->nlegs_out; i++) {
        if (t->legs_out[i] == l) {
            t->legs_out[i] = t->legs_out[--t->nlegs_out];
            Py_DECREF(l); /* the caller holds its own reference: never the last one */
            return;
        }
    }
}

/* A plaintext RTCP packet handed in by Python (aiortc's path, tests). */
static PyObject *Transport_rtcp(TransportObject *self, PyObject *arg) {
    Py_buffer b;
    if (self->counters == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Transport was not initialised");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    if (b.len > BUF_SIZE) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "RTCP packet too large");
        return NULL;
    }
    Py_INCREF(self);
    LOCK_PY();
    transport_rtcp(self, b.buf, (int)b.len);
    UNLOCK_PY();
    Py_DECREF(self);
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

static PyObject *Transport_unroute(TransportObject *self, PyObject *arg) {
    int dropped = 0;
    LOCK_PY();
    for (int i = 0; i < self->nroutes; i++) {
        if ((PyObject *)self->route_track[i] == arg) {
            self->route_track[i] = self->route_track[self->nroutes - 1];
            self->route_ssrc[i] = self->route_ssrc[self->nroutes - 1];
            self->nroutes--;
            i--;
            dropped++;
        }
    }
    UNLOCK_PY();
    for (int i = 0; i < dropped; i++) Py_DECREF(arg);
    Py_RETURN_NONE;
}

static PyObject *Transport_routes(TransportObject *self, PyObject *Py_UNUSED(ignored)) {
    uint32_t now[MAX_ROUTES];
    LOCK_PY();
    int n = self->nroutes;
    memcpy(now, self->route_ssrc, sizeof(uint32_t) * (size_t)n);
    UNLOCK_PY();
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (int i = 0; i < n; i++) PyList_SET_ITEM(out, i, PyLong_FromUnsignedLong(now[i]));
    return out;
}

static PyObject *Transport_close(TransportObject *self, PyObject *Py_UNUSED(ignored)) {
    LOCK_PY();
    int registered = self->pump != NULL;
    if (registered) pump_detach(self->pump, self); /* before the fd closes: epoll forgets it */
    if (!self->closed) {
        self->closed = 1;
        if (self->fd >= 0) close(self->fd);
        self->fd = -1;
        self->rx = self->tx = NULL;
    }
    transport_drop_routes(self);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->keep);
    UNLOCK_PY();
    if (registered) Py_DECREF(self); /* the pump's reference; the caller still holds one */
    Py_RETURN_NONE;
}

static int Transport_traverse(TransportObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->keep);
    Py_VISIT(self->fallback);
    Py_VISIT(self->counters);
    for (int i = 0; i < self->nroutes; i++) Py_VISIT(self->route_track[i]);
    for (int i = 0; i < self->nlegs_out; i++) Py_VISIT(self->legs_out[i]);
    return 0;
}

static int Transport_clear(TransportObject *self) {
    transport_drop_routes(self);
    Py_CLEAR(self->keep);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->counters);
    return 0;
}

static void Transport_dealloc(TransportObject *self) {
    PyObject_GC_UnTrack(self);
    if (self->fd >= 0) close(self->fd);
    self->fd = -1;
    Transport_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Transport_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    TransportObject *self = (TransportObject *)type->tp_alloc(type, 0);
    if (self != NULL) self->fd = -1;
    return (PyObject *)self;
}

static PyMethodDef Transport_methods[] = {
    {"on_readable", (PyCFunction)Transport_on_readable, METH_NOARGS,
     "Drain the socket (the event loop's reader callback)."},
    {"route", (PyCFunction)Transport_route, METH_VARARGS,
     "Handle RTP of this SSRC natively with this Track; False when the table is full."},
    {"unroute", (PyCFunction)Transport_unroute, METH_O, "Forget every SSRC of a Track."},
    {"routes", (PyCFunction)Transport_routes, METH_NOARGS, "The routed SSRCs."},
    {"rtcp", (PyCFunction)Transport_rtcp, METH_O,
     "Handle a plaintext (compound) RTCP packet from this transport's peer."},
    {"close", (PyCFunction)Transport_close, METH_NOARGS,
     "Close our socket descriptor and drop routes; idempotent."},
    {NULL}};

static PyMemberDef Transport_members[] = {
    {"fd", T_INT, offsetof(TransportObject, fd), READONLY,
     "this transport's own descriptor of the socket (-1 once closed)"},
    {"closed", T_INT, offsetof(TransportObject, closed), READONLY, "closed"},
    {NULL}};

PyTypeObject TransportType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fortrolig.media._fastpath.Transport",
    .tp_basicsize = sizeof(TransportObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One peer's bundled UDP socket with its SRTP sessions.",
    .tp_new = Transport_new,
    .tp_init = (initproc)Transport_init,
    .tp_dealloc = (destructor)Transport_dealloc,
    .tp_traverse = (traverseproc)Transport_traverse,
    .tp_clear = (inquiry)Transport_clear,
    .tp_methods = Transport_methods,
    .tp_members = Transport_members,
};

