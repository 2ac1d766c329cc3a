/* Pump: the native I/O thread. */
#include "dataplane.h"

/* ------------------------------------------------------------------------------------------
 * Pump: a native thread that reads every registered transport's socket with its own epoll,
 * without the GIL, so a media datagram costs no Python event-loop wake-up. What Python must see
 * (STUN, DTLS, SRTCP, unrouted SSRCs, NACK lists, keyframe requests) is queued and announced
 * on an eventfd the event loop watches; ``dispatch()`` delivers it on the Python thread.
 * ---------------------------------------------------------------------------------------- */



void pump_enqueue(PumpObject *p, TransportObject *t, int kind, uint32_t ssrc,
                         const uint8_t *data, int len, const struct sockaddr_storage *addr) {
    if (p->ring == NULL || p->count == RING_SIZE || len < 0 || len > BUF_SIZE) {
        p->dropped_events++;
        return;
    }
    Event *e = &p->ring[(p->head + p->count) % RING_SIZE];
    e->slot = t->slot;
    e->gen = t->gen;
    e->kind = kind;
    e->ssrc = ssrc;
    e->len = len;
    e->has_addr = addr != NULL;
    if (addr != NULL) e->addr = *addr;
    if (len > 0) memcpy(e->data, data, (size_t)len);
    p->count++;
}

static void *pump_main(void *arg) {
    PumpObject *p = (PumpObject *)arg;
    struct epoll_event evs[64];
    pthread_setname_np(pthread_self(), "fortrolig-io"); /* visible in top -H and /proc */
    while (!p->stop) {
        int n = epoll_wait(p->epfd, evs, 64, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        LOCK();
        p->wakeups++;
        for (int i = 0; i < n && !p->stop; i++) {
            uint64_t key = evs[i].data.u64;
            if (key == WAKE_KEY) continue;
            uint32_t slot = (uint32_t)(key >> 32), gen = (uint32_t)key;
            if (slot >= (uint32_t)p->nslots || p->gens[slot] != gen) continue;
            TransportObject *t = p->slots[slot];
            if (t != NULL && !t->closed) transport_drain(t);
        }
        if (p->count > 0 && !p->notified) {
            uint64_t one = 1;
            p->notified = 1;
            if (write(p->notifyfd, &one, sizeof(one)) < 0) p->notified = 0;
        }
        UNLOCK();
    }
    return NULL;
}

static int Pump_init(PumpObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "", names)) return -1;
    if (self->ring != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "pump already initialised");
        return -1;
    }
    self->ring = PyMem_Calloc(RING_SIZE, sizeof(Event));
    if (self->ring == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    self->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->notifyfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->epfd < 0 || self->wakefd < 0 || self->notifyfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_KEY};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, self->wakefd, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int rc = pthread_create(&self->thread, NULL, pump_main, self);
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->running = 1;
    return 0;
}

void pump_detach(PumpObject *self, TransportObject *t) {
    /* lock held; the caller releases the returned reference after unlocking */
    if (t->pump != self || t->slot >= (uint32_t)self->nslots) return;
    if (t->fd >= 0) epoll_ctl(self->epfd, EPOLL_CTL_DEL, t->fd, NULL);
    self->slots[t->slot] = NULL;
    self->gens[t->slot] = 0;
    t->pump = NULL;
}

static PyObject *Pump_register(PumpObject *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &TransportType)) {
        PyErr_SetString(PyExc_TypeError, "expected a Transport");
        return NULL;
    }
    TransportObject *t = (TransportObject *)arg;
    LOCK_PY();
    if (!self->running || self->stop || t->closed || t->pump != NULL) {
        UNLOCK_PY();
        PyErr_SetString(PyExc_RuntimeError, "pump stopped, transport closed or already registered");
        return NULL;
    }
    int slot = -1;
    for (int i = 0; i < self->nslots; i++)
        if (self->slots[i] == NULL) { slot = i; break; }
    if (slot < 0) {
        int cap = self->nslots ? self->nslots * 2 : 16;
        TransportObject **slots = PyMem_Realloc(self->slots, sizeof(*slots) * (size_t)cap);
        uint32_t *gens = slots ? PyMem_Realloc(self->gens, sizeof(*gens) * (size_t)cap) : NULL;
        if (slots) self->slots = slots;
        if (gens) self->gens = gens;
        if (slots == NULL || gens == NULL) {
            UNLOCK_PY();
            return PyErr_NoMemory();
        }
        for (int i = self->nslots; i < cap; i++) { slots[i] = NULL; gens[i] = 0; }
        slot = self->nslots;
        self->nslots = cap;
    }
    uint32_t gen = ++self->next_gen;
    if (gen == 0) gen = ++self->next_gen;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)slot << 32) | gen};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, t->fd, &ev) < 0) {
        UNLOCK_PY();
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_INCREF(t);
    self->slots[slot] = t;
    self->gens[slot] = gen;
    t->pump = self;
    t->slot = (uint32_t)slot;
    t->gen = gen;
    UNLOCK_PY();
    Py_RETURN_NONE;
}

static PyObject *Pump_unregister(PumpObject *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &TransportType)) {
        PyErr_SetString(PyExc_TypeError, "expected a Transport");
        return NULL;
    }
    TransportObject *t = (TransportObject *)arg;
    LOCK_PY();
    int mine = t->pump == self;
    pump_detach(self, t);
    UNLOCK_PY();
    if (mine) Py_DECREF(t);
    Py_RETURN_NONE;
}

/* Deliver queued events on the Python thread (the event loop's reader of ``notify_fd``). */
static PyObject *Pump_dispatch(PumpObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t value;
    if (read(self->notifyfd, &value, sizeof(value)) < 0 && errno != EAGAIN)
        return PyErr_SetFromErrno(PyExc_OSError);
    Event *e = PyMem_Malloc(sizeof(Event));
    if (e == NULL) return PyErr_NoMemory();
    for (int budget = 0; budget < RING_SIZE; budget++) {
        LOCK_PY();
        if (self->count == 0) {
            self->notified = 0;
            UNLOCK_PY();
            break;
        }
        *e = self->ring[self->head];
        self->head = (self->head + 1) % RING_SIZE;
        self->count--;
        TransportObject *t = NULL;
        TrackObject *track = NULL;
        PyObject *leg_callback = NULL;
        if (e->slot < (uint32_t)self->nslots && self->gens[e->slot] == e->gen)
            t = self->slots[e->slot];
        if (t != NULL && (e->kind == EV_MISSING || e->kind == EV_KEYFRAME || e->kind == EV_TAP)) {
            for (int i = 0; i < t->nroutes; i++)
                if (t->route_ssrc[i] == e->ssrc) { track = t->route_track[i]; break; }
        } else if (t != NULL && e->kind == EV_LEG_KEYFRAME) {
            for (int i = 0; i < t->nlegs_out; i++) {
                if (t->legs_out[i]->ssrc == e->ssrc) {
                    leg_callback = t->legs_out[i]->on_keyframe;
                    break;
                }
            }
        }
        Py_XINCREF(t);
        Py_XINCREF(track);
        Py_XINCREF(leg_callback);
        UNLOCK_PY();
        if (leg_callback != NULL) {
            call_soon_safe(leg_callback, NULL);
            Py_DECREF(leg_callback);
        }
        if (t != NULL && e->kind == EV_FALLBACK && e->has_addr) {
            call_fallback(t, e->data, e->len, &e->addr);
        } else if (track != NULL && e->kind == EV_MISSING) {
            uint16_t missing[NACK_MAX_GAP];
            int n = e->len / (int)sizeof(uint16_t);
            if (n > NACK_MAX_GAP) n = NACK_MAX_GAP;
            memcpy(missing, e->data, (size_t)n * sizeof(uint16_t));
            if (track->on_missing != NULL) call_missing(track, missing, n);
        } else if (track != NULL && e->kind == EV_KEYFRAME) {
            call_soon_safe(track->on_keyframe, NULL);
        } else if (track != NULL && e->kind == EV_TAP && track->tap != NULL) {
            PyObject *packet = PyBytes_FromStringAndSize((const char *)e->data, e->len);
            if (packet == NULL) PyErr_Clear();
            else {
                call_soon_safe(track->tap, packet);
                Py_DECREF(packet);
            }
        }
        Py_XDECREF(track);
        Py_XDECREF(t);
    }
    PyMem_Free(e);
    /* Budget spent with events left (more arrived meanwhile): announce them again, or the
     * thread, which signals only when nothing is announced yet, would never wake us. */
    LOCK_PY();
    if (self->count > 0 && self->notifyfd >= 0) {
        uint64_t one = 1;
        self->notified = 1;
        if (write(self->notifyfd, &one, sizeof(one)) < 0) self->notified = 0;
    }
    UNLOCK_PY();
    Py_RETURN_NONE;
}

static int pump_stop(PumpObject *self) {
    if (self->running && lock_depth > 0) {
        /* called from a callback made under the lock: joining would wait for ourselves */
        PyErr_SetString(PyExc_RuntimeError, "cannot stop the pump from a data-plane callback");
        return -1;
    }
    if (self->running) {
        self->stop = 1;
        uint64_t one = 1;
        if (write(self->wakefd, &one, sizeof(one)) < 0) { /* the thread also sees stop */ }
        Py_BEGIN_ALLOW_THREADS
        pthread_join(self->thread, NULL);
        Py_END_ALLOW_THREADS
        self->running = 0;
    }
    /* release every registered transport */
    for (;;) {
        TransportObject *t = NULL;
        LOCK_PY();
        for (int i = 0; i < self->nslots && t == NULL; i++) {
            if (self->slots[i] != NULL) {
                t = self->slots[i];
                pump_detach(self, t);
            }
        }
        UNLOCK_PY();
        if (t == NULL) break;
        Py_DECREF(t);
    }
    int fds[3] = {self->epfd, self->wakefd, self->notifyfd};
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0) close(fds[i]);
    self->epfd = self->wakefd = self->notifyfd = -1;
    return 0;
}

static PyObject *Pump_stop(PumpObject *self, PyObject *Py_UNUSED(ignored)) {
    if (pump_stop(self) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Pump_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PumpObject *self = (PumpObject *)type->tp_alloc(type, 0);
    if (self != NULL) self->epfd = self->wakefd = self->notifyfd = -1;
    return (PyObject *)self;
}

static void Pump_dealloc(PumpObject *self) {
    if (pump_stop(self) < 0) {
        /* Unreachable in practice (the SFU stops its pump); the thread still uses this
         * object, so it is leaked rather than freed under it. */
        PyErr_WriteUnraisable((PyObject *)self);
        self->stop = 1;
        return;
    }
    PyMem_Free(self->slots);
    PyMem_Free(self->gens);
    PyMem_Free(self->ring);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Pump_get_pending(PumpObject *self, void *closure) {
    LOCK_PY();
    int n = self->count;
    UNLOCK_PY();
    return PyLong_FromLong(n);
}

static PyMethodDef Pump_methods[] = {
    {"register", (PyCFunction)Pump_register, METH_O,
     "Read this transport's socket on the pump thread from now on."},
    {"unregister", (PyCFunction)Pump_unregister, METH_O, "Stop reading it; idempotent."},
    {"dispatch", (PyCFunction)Pump_dispatch, METH_NOARGS,
     "Deliver queued events (the event loop's reader of notify_fd)."},
    {"stop", (PyCFunction)Pump_stop, METH_NOARGS,
     "Stop the thread and release every transport; idempotent."},
    {NULL}};

static PyMemberDef Pump_members[] = {
    {"notify_fd", T_INT, offsetof(PumpObject, notifyfd), READONLY,
     "eventfd that becomes readable when events are queued"},
    {"running", T_INT, offsetof(PumpObject, running), READONLY, "thread running"},
    {"wakeups", T_ULONGLONG, offsetof(PumpObject, wakeups), READONLY, "epoll wake-ups"},
    {"dropped_events", T_ULONGLONG, offsetof(PumpObject, dropped_events), READONLY,
     "events dropped because the queue was full"},
    {NULL}};

static PyGetSetDef Pump_getset[] = {
    {"pending", (getter)Pump_get_pending, NULL, "events waiting for dispatch()", NULL}, {NULL}};

PyTypeObject PumpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fortrolig.media._fastpath.Pump",
    .tp_basicsize = sizeof(PumpObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A native thread reading media sockets without the GIL.",
    .tp_new = Pump_new,
    .tp_init = (initproc)Pump_init,
    .tp_dealloc = (destructor)Pump_dealloc,
    .tp_methods = Pump_methods,
    .tp_members = Pump_members,
    .tp_getset = Pump_getset,
};

