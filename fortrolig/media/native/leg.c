/* Leg: one published track forwarded to one subscriber. */
#include "dataplane.h"

/* ------------------------------------------------------------------------------------------
 * Leg
 * ---------------------------------------------------------------------------------------- */

static int leg_extensions(LegObject *l, uint8_t *o, uint32_t abs_send, int level) {
    int two = l->mid_id > 14 || l->abs_send_id > 14 || l->audio_level_id > 14 || l->mid_len > 16;
    uint8_t *p = o + 4;
    if (l->mid_id && l->mid_len) {
        if (two) { *p++ = (uint8_t)l->mid_id; *p++ = (uint8_t)l->mid_len; }
        else *p++ = (uint8_t)((l->mid_id << 4) | (l->mid_len - 1));
        memcpy(p, l->mid, (size_t)l->mid_len);
        p += l->mid_len;
    }
    if (l->abs_send_id) {
        if (two) { *p++ = (uint8_t)l->abs_send_id; *p++ = 3; }
        else *p++ = (uint8_t)((l->abs_send_id << 4) | 2);
        *p++ = (abs_send >> 16) & 0xFF; *p++ = (abs_send >> 8) & 0xFF; *p++ = abs_send & 0xFF;
    }
    if (l->audio_level_id && level >= 0) {
        if (two) { *p++ = (uint8_t)l->audio_level_id; *p++ = 1; }
        else *p++ = (uint8_t)(l->audio_level_id << 4);
        *p++ = (uint8_t)level;
    }
    int body = (int)(p - (o + 4));
    if (body == 0) return 0;
    while (body % 4) { *p++ = 0; body++; }
    wr16(o, two ? 0x1000 : 0xBEDE);
    wr16(o + 2, (uint16_t)(body / 4));
    return 4 + body;
}

static void leg_cache_store(LegObject *l, uint16_t seq, const uint8_t *data, int len) {
    int slot = seq % CACHE_SIZE;
    if (l->cache_cap[slot] < len) {
        uint8_t *grown = realloc(l->cache[slot], (size_t)len);
        if (grown == NULL) { l->cache_len[slot] = 0; return; }
        l->cache[slot] = grown;
        l->cache_cap[slot] = (uint16_t)len;
    }
    memcpy(l->cache[slot], data, (size_t)len);
    l->cache_len[slot] = (uint16_t)len;
}

/* Rewrite ``r`` for this subscriber and send it. */
void leg_forward(LegObject *l, const Rtp *r, uint16_t in_seq,
                        int keyframe, double now, uint32_t abs_send) {
    TransportObject *t = l->out;
    if (l->closed || !l->attached || t == NULL || t->closed) return;
    if (!l->started) {
        if (l->gated && !keyframe) {
            l->counters->gated_drops++;
            l->want_keyframe = 1;
            return;
        }
        l->seq_delta = (uint16_t)(l->seq_start - in_seq);
        l->first_in = in_seq;
        l->started = 1;
    } else if (l->packets < 1024 && seq_newer(l->first_in, in_seq)) {
        return; /* reordered from before the gate opened: the subscriber never saw its base */
    }
    uint8_t *o = tx_buf;
    int payload_len = r->len - r->payload; /* payload plus any padding */
    int csrc_len = 4 * r->cc;
    int pos = 12 + csrc_len;
    int ext = leg_extensions(l, o + pos, abs_send, r->audio_level);
    if (pos + ext + payload_len > MAX_RTP) {
        l->counters->malformed++;
        return;
    }
    uint16_t seq = (uint16_t)(in_seq + l->seq_delta);
    o[0] = (uint8_t)(0x80 | (r->has_padding ? 0x20 : 0) | (ext ? 0x10 : 0) | r->cc);
    o[1] = (uint8_t)((r->marker << 7) | (l->pt & 0x7F));
    wr16(o + 2, seq);
    wr32(o + 4, r->ts + l->ts_delta);
    wr32(o + 8, l->ssrc);
    memcpy(o + 12, r->data + 12, (size_t)csrc_len);
    pos += ext;
    memcpy(o + pos, r->data + r->payload, (size_t)payload_len);
    int len = pos + payload_len;
    if (l->caching) leg_cache_store(l, seq, o, len);
    int sent = transport_send(t, o, len);
    if (sent) {
        l->packets++;
        l->octets += (unsigned long long)(r->payload_end - r->payload);
        l->last_in_ts = r->ts;
        l->last_arrival = now;
        l->counters->forwarded_packets++;
        l->counters->forwarded_bytes += (unsigned long long)sent;
    }
}

static void leg_free_cache(LegObject *l) {
    for (int i = 0; i < CACHE_SIZE; i++) {
        free(l->cache[i]);
        l->cache[i] = NULL;
        l->cache_len[i] = l->cache_cap[i] = 0;
    }
}

static int Leg_init(LegObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"counters", "gated", "seq_start", "ts_delta", "rtx_seq", NULL};
    PyObject *counters;
    int gated;
    unsigned int seq_start, ts_delta, rtx_seq;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!pIII", names, &CountersType, &counters, &gated,
                                     &seq_start, &ts_delta, &rtx_seq))
        return -1;
    Py_INCREF(counters);
    Py_XSETREF(self->counters, (CountersObject *)counters);
    self->gated = gated;
    self->seq_start = (uint16_t)seq_start;
    self->ts_delta = ts_delta;
    self->rtx_seq = (uint16_t)rtx_seq;
    self->rtt = -1;
    return 0;
}

static PyObject *Leg_attach(LegObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"transport", "ssrc", "rtx_ssrc", "payload_type", "rtx_payload_type",
                            "mid", "mid_id", "abs_send_time_id", "audio_level_id",
                            "on_keyframe", NULL};
    PyObject *transport, *on_keyframe = Py_None;
    unsigned int ssrc, rtx_ssrc;
    int pt, rtx_pt, mid_id, abs_id, level_id;
    Py_buffer mid;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!IIiiy*iii|O", names, &TransportType,
                                     &transport, &ssrc, &rtx_ssrc, &pt, &rtx_pt, &mid, &mid_id,
                                     &abs_id, &level_id, &on_keyframe))
        return NULL;
    LOCK_PY();
    if (self->closed || self->counters == NULL) {
        UNLOCK_PY();
        PyBuffer_Release(&mid);
        PyErr_SetString(PyExc_RuntimeError, "leg is closed or was not initialised");
        return NULL;
    }
    if (mid.len > 255 || pt < 0 || pt > 127 || rtx_pt > 127 || mid_id < 0 || mid_id > 255 ||
        abs_id < 0 || abs_id > 255 || level_id < 0 || level_id > 255) {
        UNLOCK_PY();
        PyBuffer_Release(&mid);
        PyErr_SetString(PyExc_ValueError, "extension id, payload type or mid out of range");
        return NULL;
    }
    if (transport_add_leg((TransportObject *)transport, self) < 0) {
        UNLOCK_PY();
        PyBuffer_Release(&mid);
        return PyErr_NoMemory();
    }
    if (self->out != NULL && self->out != (TransportObject *)transport)
        transport_remove_leg(self->out, self);
    memcpy(self->mid, mid.buf, (size_t)mid.len);
    self->mid_len = (int)mid.len;
    PyBuffer_Release(&mid);
    Py_INCREF(transport);
    Py_XSETREF(self->out, (TransportObject *)transport);
    if (on_keyframe != Py_None) {
        Py_INCREF(on_keyframe);
        Py_XSETREF(self->on_keyframe, on_keyframe);
    }
    self->ssrc = ssrc;
    self->rtx_ssrc = rtx_ssrc;
    self->pt = pt;
    self->rtx_pt = rtx_pt;
    self->mid_id = mid_id;
    self->abs_send_id = abs_id;
    self->audio_level_id = level_id;
    self->caching = rtx_pt >= 0;
    self->attached = 1;
    UNLOCK_PY();
    Py_RETURN_NONE;
}

/* Resend ``seq`` from the cache over RTX (lock held); 1 when sent. */
int leg_retransmit(LegObject *self, uint16_t seq) {
    int slot = seq % CACHE_SIZE;
    TransportObject *t = self->out;
    uint8_t *c = self->cache[slot];
    int n = self->cache_len[slot];
    if (self->closed || t == NULL || t->closed || self->rtx_pt < 0 || c == NULL || n < 12 ||
        rd16(c + 2) != seq) {
        self->counters->nack_unanswered++;
        return 0;
    }
    Rtp r;
    if (rtp_parse(c, n, 0, &r) != 0) {
        self->counters->nack_unanswered++;
        return 0;
    }
    uint8_t *o = tx_buf;
    int hl = r.payload;
    int body = r.payload_end - r.payload; /* padding is dropped */
    if (hl + 2 + body > MAX_RTP) return 0;
    memcpy(o, c, (size_t)hl);
    o[0] &= (uint8_t)~0x20;
    o[1] = (uint8_t)((c[1] & 0x80) | (self->rtx_pt & 0x7F));
    wr16(o + 2, self->rtx_seq);
    wr32(o + 8, self->rtx_ssrc);
    o[hl] = c[2];
    o[hl + 1] = c[3];
    memcpy(o + hl + 2, c + r.payload, (size_t)body);
    self->rtx_seq++;
    if (transport_send(t, o, hl + 2 + body)) {
        self->counters->retransmitted++;
        return 1;
    }
    return 0;
}

/* Answer a NACK: resend ``seq`` from the cache over RTX (RFC 4588). */
static PyObject *Leg_retransmit(LegObject *self, PyObject *arg) {
    long seq = PyLong_AsLong(arg);
    if (seq == -1 && PyErr_Occurred()) return NULL;
    if (seq < 0 || seq > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "sequence number out of range");
        return NULL;
    }
    if (self->counters == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Leg was not initialised");
        return NULL;
    }
    LOCK_PY();
    int sent = leg_retransmit(self, (uint16_t)seq);
    UNLOCK_PY();
    return PyBool_FromLong(sent);
}

static PyObject *Leg_close(LegObject *self, PyObject *Py_UNUSED(ignored)) {
    Py_INCREF(self);
    LOCK_PY();
    self->closed = 1;
    self->attached = 0;
    TransportObject *out = self->out;
    self->out = NULL;
    if (out != NULL) transport_remove_leg(out, self);
    leg_free_cache(self);
    PyObject *callback = self->on_keyframe;
    self->on_keyframe = NULL;
    UNLOCK_PY();
    Py_XDECREF(out);
    Py_XDECREF(callback);
    Py_DECREF(self);
    Py_RETURN_NONE;
}

/* Python's sender report for this leg: remembered to measure the round trip when the
 * subscriber's receiver report echoes it (LSR/DLSR, RFC 3550 6.4.1). */
static PyObject *Leg_note_sr(LegObject *self, PyObject *args) {
    unsigned int lsr;
    double sent_at;
    if (!PyArg_ParseTuple(args, "Id", &lsr, &sent_at)) return NULL;
    LOCK_PY();
    self->sr_lsr = lsr;
    self->sr_sent_at = sent_at;
    UNLOCK_PY();
    Py_RETURN_NONE;
}

static PyObject *Leg_get_forwarding(LegObject *self, void *closure) {
    return PyBool_FromLong(self->started);
}

static int Leg_traverse(LegObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->out);
    Py_VISIT(self->on_keyframe);
    Py_VISIT(self->counters);
    return 0;
}

static int Leg_clear(LegObject *self) {
    Py_CLEAR(self->out);
    Py_CLEAR(self->on_keyframe);
    Py_CLEAR(self->counters);
    return 0;
}

static void Leg_dealloc(LegObject *self) {
    PyObject_GC_UnTrack(self);
    Leg_clear(self);
    leg_free_cache(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Leg_methods[] = {
    {"attach", (PyCFunction)(void (*)(void))Leg_attach, METH_VARARGS | METH_KEYWORDS,
     "Bind to a subscriber transport and its negotiated SSRCs, payload types and extensions."},
    {"retransmit", (PyCFunction)Leg_retransmit, METH_O,
     "Resend a cached packet over RTX; False when it is no longer cached."},
    {"close", (PyCFunction)Leg_close, METH_NOARGS, "Stop forwarding; idempotent."},
    {"note_sr", (PyCFunction)Leg_note_sr, METH_VARARGS,
     "note_sr(lsr, sent_at): the SR just sent (for the round-trip time)."},
    {NULL}};

static PyMemberDef Leg_members[] = {
    {"packets", T_ULONGLONG, offsetof(LegObject, packets), READONLY, "packets sent"},
    {"octets", T_ULONGLONG, offsetof(LegObject, octets), READONLY, "payload octets sent"},
    {"last_in_ts", T_UINT, offsetof(LegObject, last_in_ts), READONLY,
     "publisher RTP timestamp of the last packet sent"},
    {"last_arrival", T_DOUBLE, offsetof(LegObject, last_arrival), READONLY,
     "Unix time the last packet was sent"},
    {"ts_delta", T_UINT, offsetof(LegObject, ts_delta), READONLY, "RTP timestamp offset"},
    {"ssrc", T_UINT, offsetof(LegObject, ssrc), READONLY, "this leg's SSRC"},
    {"closed", T_INT, offsetof(LegObject, closed), READONLY, "closed"},
    {"remb_bps", T_ULONGLONG, offsetof(LegObject, remb_bps), READONLY,
     "the subscriber's latest REMB estimate naming this leg (0: none)"},
    {"remb_at", T_DOUBLE, offsetof(LegObject, remb_at), READONLY,
     "time.monotonic() of that REMB"},
    {"fraction_lost", T_INT, offsetof(LegObject, fraction_lost), READONLY,
     "fraction lost (/256) in the subscriber's latest report"},
    {"jitter", T_UINT, offsetof(LegObject, jitter), READONLY,
     "interarrival jitter in the subscriber's latest report (RTP units)"},
    {"rtt", T_DOUBLE, offsetof(LegObject, rtt), READONLY, "round-trip time in s (-1: unknown)"},
    {NULL}};

static PyGetSetDef Leg_getset[] = {
    {"forwarding", (getter)Leg_get_forwarding, NULL,
     "True once the keyframe gate opened (video) or the first packet passed (audio)", NULL},
    {NULL}};

PyTypeObject LegType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fortrolig.media._fastpath.Leg",
    .tp_basicsize = sizeof(LegObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One published track forwarded to one subscriber.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Leg_init,
    .tp_dealloc = (destructor)Leg_dealloc,
    .tp_traverse = (traverseproc)Leg_traverse,
    .tp_clear = (inquiry)Leg_clear,
    .tp_methods = Leg_methods,
    .tp_members = Leg_members,
    .tp_getset = Leg_getset,
};

