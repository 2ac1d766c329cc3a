/* Track: one published stream, its statistics, NACK tracking and fan-out. */
#include "dataplane.h"

/* ------------------------------------------------------------------------------------------
 * Track
 * ---------------------------------------------------------------------------------------- */

static void stats_add(TrackObject *s, uint16_t seq, uint32_t ts, double now) {
    int in_order = !s->have_seq || seq_newer(seq, s->max_seq);
    s->received++;
    if (!s->have_seq) {
        s->base_seq = seq;
        s->max_seq = seq;
        s->have_seq = 1;
    } else if (in_order) {
        if (seq < s->max_seq) s->cycles += 1 << 16;
        s->max_seq = seq;
    }
    if (!in_order) return;
    long long arrival = (long long)(now * s->clock_rate);
    if (s->have_last && ts != s->last_ts) {
        long long d = (arrival - s->last_arrival) - (long long)(int32_t)(ts - s->last_ts);
        if (d < 0) d = -d;
        s->jitter_q4 += d - ((s->jitter_q4 + 8) >> 4);
    }
    s->last_arrival = arrival;
    s->last_ts = ts;
    s->have_last = 1;
}

static void miss_remove(TrackObject *s, int i) {
    int after = s->nmiss - i - 1;
    memmove(s->miss_seq + i, s->miss_seq + i + 1, (size_t)after * sizeof s->miss_seq[0]);
    memmove(s->miss_tries + i, s->miss_tries + i + 1, (size_t)after * sizeof s->miss_tries[0]);
    memmove(s->miss_at + i, s->miss_at + i + 1, (size_t)after * sizeof s->miss_at[0]);
    s->nmiss--;
}

/* How long to wait for a retransmission before asking again: 1.5 times the publisher's
 * measured answer time (its round trip plus its pacing) and 10 ms, within bounds. A fixed
 * once-a-second retry froze a subscriber's video for most of a second whenever a NACK or its
 * answer was lost on a 150 ms link (tests/e2e/test_poor_network.py). */
static double nack_wait(const TrackObject *s) {
    if (s->nack_answer < 0) return NACK_FIRST_WAIT;
    double wait = 1.5 * s->nack_answer + 0.01;
    return wait < NACK_MIN_WAIT ? NACK_MIN_WAIT : wait > NACK_MAX_WAIT ? NACK_MAX_WAIT : wait;
}

/* Record a received sequence number at monotonic ``now`` (``rtx``: it came as a
 * retransmission); returns how many new missing ones were appended to out (at most
 * NACK_MAX_GAP - 1). */
static int nack_add(TrackObject *s, uint16_t seq, int rtx, double now, uint16_t *out) {
    if (!s->nack_have) {
        s->nack_have = 1;
        s->nack_max = seq;
        return 0;
    }
    if (!seq_newer(seq, s->nack_max)) { /* a retransmission or a late packet */
        for (int i = 0; i < s->nmiss; i++) {
            if (s->miss_seq[i] != seq) continue;
            /* Answer time from retransmissions of packets asked for once (Karn: after a
             * second ask it is unknown which ask was answered); a reordered packet says
             * nothing about it. */
            if (rtx && s->miss_tries[i] == 1) {
                double sample = now - s->miss_at[i];
                if (sample >= 0 && sample < 10)
                    s->nack_answer = s->nack_answer < 0
                                         ? sample
                                         : 0.875 * s->nack_answer + 0.125 * sample;
            }
            miss_remove(s, i);
            break;
        }
        return 0;
    }
    uint16_t gap = (uint16_t)(seq - s->nack_max);
    s->nack_max = seq;
    if (gap > NACK_MAX_GAP) {
        s->nmiss = 0;
        return 0;
    }
    int fresh = 0;
    for (int i = gap - 1; i > 0; i--) out[fresh++] = (uint16_t)(seq - i);
    /* forget what fell out of the window, then make room (oldest first) */
    uint16_t floor = (uint16_t)(seq - NACK_WINDOW);
    int k = 0;
    for (int i = 0; i < s->nmiss; i++) {
        if (!seq_newer(floor, s->miss_seq[i])) {
            s->miss_seq[k] = s->miss_seq[i];
            s->miss_tries[k] = s->miss_tries[i];
            s->miss_at[k] = s->miss_at[i];
            k++;
        }
    }
    s->nmiss = k;
    int over = s->nmiss + fresh - NACK_CAP;
    if (over > 0) {
        memmove(s->miss_seq, s->miss_seq + over, (size_t)(s->nmiss - over) * 2);
        memmove(s->miss_tries, s->miss_tries + over, (size_t)(s->nmiss - over));
        memmove(s->miss_at, s->miss_at + over, (size_t)(s->nmiss - over) * sizeof(double));
        s->nmiss -= over;
    }
    for (int i = 0; i < fresh; i++) {
        s->miss_seq[s->nmiss] = out[i];
        s->miss_tries[s->nmiss] = 1;
        s->miss_at[s->nmiss] = now;
        s->nmiss++;
    }
    return fresh;
}

static int is_media_pt(const TrackObject *s, int pt) {
    return pt == s->pt || (s->alt_pt >= 0 && pt == s->alt_pt);
}

static int is_rtx_pt(const TrackObject *s, int pt) {
    return (s->rtx_pt >= 0 && pt == s->rtx_pt) || (s->alt_rtx_pt >= 0 && pt == s->alt_rtx_pt);
}

/* Whether a retransmission of ``seq`` is worth forwarding. A publisher resends what we asked
 * for, but also recent packets as bandwidth probes (Chromium's RTX padding): subscribers have
 * those already. A packet never sent (newer than the newest seen) is a garbled header. */
static int rtx_fills_gap(const TrackObject *s, uint16_t seq) {
    if (!s->have_seq) return 1;
    if (seq_newer(seq, s->max_seq)) return 0;
    if (!s->nack || !s->nack_have) return (uint16_t)(s->max_seq - seq) < NACK_WINDOW;
    for (int i = 0; i < s->nmiss; i++)
        if (s->miss_seq[i] == seq) return 1;
    return 0;
}

void call_soon_safe(PyObject *callable, PyObject *arg) {
    if (callable == NULL || callable == Py_None) return;
    PyObject *res = arg ? PyObject_CallOneArg(callable, arg) : PyObject_CallNoArgs(callable);
    if (res == NULL) PyErr_WriteUnraisable(callable);
    Py_XDECREF(res);
}


void call_missing(TrackObject *s, const uint16_t *missing, int n) {
    PyObject *lst = PyList_New(n);
    if (lst == NULL) {
        PyErr_Clear();
        return;
    }
    for (int i = 0; i < n; i++) PyList_SET_ITEM(lst, i, PyLong_FromLong(missing[i]));
    call_soon_safe(s->on_missing, lst);
    Py_DECREF(lst);
}

/* Hand one packet to the track's Python subscriber as a plain RTP packet: 12-byte header with
 * the publisher's SSRC, sequence number (RTX unwrapped), timestamp, payload type and marker,
 * then the payload without padding or header extensions. Queued when a pump thread reads the
 * origin (no GIL here), else called at once. */
static void track_tap(TrackObject *s, const Rtp *r, uint16_t seq, struct PumpObject *pump,
                      TransportObject *origin, uint32_t route) {
    int payload_len = r->payload_end - r->payload;
    if (payload_len <= 0 || 12 + payload_len > BUF_SIZE) return; /* padding-only probes */
    uint8_t out[BUF_SIZE];
    out[0] = 0x80;
    out[1] = (uint8_t)((r->marker << 7) | (r->pt & 0x7F));
    wr16(out + 2, seq);
    wr32(out + 4, r->ts);
    wr32(out + 8, s->media_ssrc ? s->media_ssrc : r->ssrc);
    memcpy(out + 12, r->data + r->payload, (size_t)payload_len);
    if (pump != NULL) {
        pump_enqueue(pump, origin, EV_TAP, route, out, 12 + payload_len, NULL);
        return;
    }
    PyObject *packet = PyBytes_FromStringAndSize((const char *)out, 12 + payload_len);
    if (packet == NULL) {
        PyErr_Clear();
        return;
    }
    call_soon_safe(s->tap, packet);
    Py_DECREF(packet);
}

/* One plaintext RTP packet of this track: statistics, NACK, fan-out.
 *
 * ``origin`` is the transport it arrived on and ``route`` the SSRC it was routed by. When the
 * origin is read by a pump thread (no GIL), Python callbacks are queued instead of called and
 * no reference count is touched. Otherwise (GIL held) they are called at once. */
void track_ingest(TrackObject *s, uint8_t *data, int len, TransportObject *origin,
                         uint32_t route) {
    Rtp r;
    struct PumpObject *pump = origin != NULL ? origin->pump : NULL;
    if (s->closed || s->counters == NULL) return; /* closed, or never initialised */
    if (rtp_parse(data, len, s->audio_level_id, &r) != 0) {
        s->counters->malformed++;
        return;
    }
    uint16_t seq = r.seq;
    int rtx = 0;
    /* SSRC first, payload type second: during a renegotiation one payload type can name the
     * media in one mapping and RTX in the other (aiortc renumbers Chromium's VP8 96 -> 97, and
     * 97 was its RTX), and the browser switches when it applies its answer, before the server
     * has read it. Read by payload type alone, those media packets would be unwrapped as RTX
     * with garbage sequence numbers, and the jump would break every subscriber's SRTP. */
    if (s->media_ssrc != 0 && r.ssrc == s->media_ssrc) {
        if (!is_media_pt(s, r.pt)) {
            s->counters->unknown_payload_type++;
            return;
        }
        r.pt = s->pt;
    } else if (is_rtx_pt(s, r.pt)) {
        if (r.payload_end - r.payload < 2 || s->media_ssrc == 0) return; /* padding probe */
        seq = rd16(data + r.payload);
        if (!rtx_fills_gap(s, seq)) {
            s->counters->rtx_discarded++;
            return;
        }
        r.payload += 2;
        r.pt = s->pt;
        r.ssrc = s->media_ssrc;
        s->counters->rtx_received++;
        rtx = 1;
    } else if (!is_media_pt(s, r.pt)) {
        s->counters->unknown_payload_type++;
        return;
    } else if (s->media_ssrc == 0) {
        s->media_ssrc = r.ssrc;
        r.pt = s->pt;
    } else {
        return; /* another stream's SSRC */
    }
    s->counters->ingress_packets++;
    double now;
    uint32_t abs_send;
    realtime(&now, &abs_send);
    stats_add(s, seq, r.ts, now);
    if (pump == NULL) Py_INCREF(s); /* a callback may close (and release) the track */
    if (s->tap != NULL) track_tap(s, &r, seq, pump, origin, route);
    if (s->nack) {
        uint16_t missing[NACK_MAX_GAP];
        int n = nack_add(s, seq, rtx, monotonic_now(), missing);
        if (n > 0 && pump != NULL)
            pump_enqueue(pump, origin, EV_MISSING, route, (const uint8_t *)missing,
                         n * (int)sizeof(uint16_t), NULL);
        else if (n > 0 && s->on_missing != NULL)
            call_missing(s, missing, n);
    }
    int keyframe = 0;
    if (s->keyframe_codec == KF_VP8)
        keyframe = vp8_keyframe_start(data + r.payload, r.payload_end - r.payload);
    else if (s->keyframe_codec == KF_H264)
        keyframe = h264_keyframe_start(data + r.payload, r.payload_end - r.payload);
    int want = 0;
    for (int i = 0; i < s->nlegs && !s->closed; i++) {
        LegObject *l = s->legs[i];
        l->want_keyframe = 0;
        leg_forward(l, &r, seq, keyframe, now, abs_send);
        want |= l->want_keyframe;
    }
    if (want && !s->closed) {
        if (pump != NULL)
            pump_enqueue(pump, origin, EV_KEYFRAME, route, NULL, 0, NULL);
        else
            call_soon_safe(s->on_keyframe, NULL);
    }
    if (pump == NULL) Py_DECREF(s);
}

static int Track_init(TrackObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"counters", "keyframe_codec", "clock_rate", "payload_type",
                            "rtx_payload_type", "nack", "on_keyframe", "on_missing", NULL};
    PyObject *counters, *on_keyframe, *on_missing;
    int kf, clock_rate, pt, rtx_pt, nack;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!iiiipOO", names, &CountersType, &counters, &kf,
                                     &clock_rate, &pt, &rtx_pt, &nack, &on_keyframe, &on_missing))
        return -1;
    if (clock_rate <= 0 || pt < 0 || pt > 127 || rtx_pt > 127 || kf < KF_NONE || kf > KF_H264) {
        PyErr_SetString(PyExc_ValueError, "bad codec parameters");
        return -1;
    }
    Py_INCREF(counters);
    Py_XSETREF(self->counters, (CountersObject *)counters);
    Py_INCREF(on_keyframe);
    Py_XSETREF(self->on_keyframe, on_keyframe);
    Py_INCREF(on_missing);
    Py_XSETREF(self->on_missing, on_missing);
    self->keyframe_codec = kf;
    self->clock_rate = clock_rate;
    self->pt = pt;
    self->rtx_pt = rtx_pt;
    self->alt_pt = self->alt_rtx_pt = -1;
    self->nack = nack;
    self->nack_answer = -1;
    return 0;
}

static PyObject *Track_ingest(TrackObject *self, PyObject *arg) {
    Py_buffer b;
    if (self->counters == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Track was not initialised");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    uint8_t buf[BUF_SIZE];
    LOCK_PY();
    if (b.len <= MAX_RTP) {
        memcpy(buf, b.buf, (size_t)b.len);
        track_ingest(self, buf, (int)b.len, NULL, 0);
    } else {
        self->counters->malformed++;
    }
    UNLOCK_PY();
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

static PyObject *Track_set_codec(TrackObject *self, PyObject *args) {
    int pt, rtx_pt;
    if (!PyArg_ParseTuple(args, "ii", &pt, &rtx_pt)) return NULL;
    if (pt < 0 || pt > 127 || rtx_pt > 127) {
        PyErr_SetString(PyExc_ValueError, "payload type out of range");
        return NULL;
    }
    LOCK_PY();
    /* packets already in flight under the old mapping stay welcome until the next change */
    self->alt_pt = self->pt;
    self->alt_rtx_pt = self->rtx_pt;
    self->pt = pt;
    self->rtx_pt = rtx_pt;
    UNLOCK_PY();
    Py_RETURN_NONE;
}

static PyObject *Track_expect_codec(TrackObject *self, PyObject *args) {
    int pt, rtx_pt;
    if (!PyArg_ParseTuple(args, "ii", &pt, &rtx_pt)) return NULL;
    if (pt < 0 || pt > 127 || rtx_pt > 127) {
        PyErr_SetString(PyExc_ValueError, "payload type out of range");
        return NULL;
    }
    LOCK_PY();
    self->alt_pt = pt;
    self->alt_rtx_pt = rtx_pt < 0 ? -1 : rtx_pt;
    UNLOCK_PY();
    Py_RETURN_NONE;
}

static PyObject *Track_set_options(TrackObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"media_ssrc", "audio_level_id", NULL};
    unsigned int ssrc = 0;
    int level = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|Ii", names, &ssrc, &level)) return NULL;
    LOCK_PY();
    if (ssrc) self->media_ssrc = ssrc;
    if (level >= 0 && level < 256) self->audio_level_id = level;
    UNLOCK_PY();
    Py_RETURN_NONE;
}

static PyObject *Track_add_leg(TrackObject *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &LegType) || ((LegObject *)arg)->counters == NULL) {
        PyErr_SetString(PyExc_TypeError, "expected an initialised Leg");
        return NULL;
    }
    LOCK_PY();
    if (self->closed) {
        UNLOCK_PY();
        PyErr_SetString(PyExc_RuntimeError, "track is closed");
        return NULL;
    }
    for (int i = 0; i < self->nlegs; i++) {
        if ((PyObject *)self->legs[i] == arg) {
            UNLOCK_PY();
            Py_RETURN_NONE;
        }
    }
    if (self->nlegs == self->caplegs) {
        int cap = self->caplegs ? self->caplegs * 2 : 4;
        LegObject **grown = PyMem_Realloc(self->legs, sizeof(LegObject *) * (size_t)cap);
        if (grown == NULL) {
            UNLOCK_PY();
            return PyErr_NoMemory();
        }
        self->legs = grown;
        self->caplegs = cap;
    }
    Py_INCREF(arg);
    self->legs[self->nlegs++] = (LegObject *)arg;
    UNLOCK_PY();
    Py_RETURN_NONE;
}

static PyObject *Track_remove_leg(TrackObject *self, PyObject *arg) {
    LegObject *gone = NULL;
    LOCK_PY();
    for (int i = 0; i < self->nlegs; i++) {
        if ((PyObject *)self->legs[i] == arg) {
            gone = self->legs[i];
            memmove(self->legs + i, self->legs + i + 1,
                    sizeof(LegObject *) * (size_t)(self->nlegs - i - 1));
            self->nlegs--;
            break;
        }
    }
    UNLOCK_PY();
    Py_XDECREF(gone);
    Py_RETURN_NONE;
}

/* (fraction_lost, packets_lost, extended_highest_seq, jitter) for a receiver report, or None
 * before the first packet. Advances the "prior" counters, as RFC 3550 A.3 does per report. */
static PyObject *Track_report(TrackObject *s, PyObject *Py_UNUSED(ignored)) {
    LOCK_PY();
    if (!s->have_seq) {
        UNLOCK_PY();
        Py_RETURN_NONE;
    }
    unsigned long long expected = (unsigned long long)s->cycles + s->max_seq - s->base_seq + 1;
    long long lost = (long long)expected - (long long)s->received;
    if (lost > 0x7FFFFF) lost = 0x7FFFFF;
    if (lost < -0x800000) lost = -0x800000;
    long long exp_int = (long long)(expected - s->expected_prior);
    long long rec_int = (long long)(s->received - s->received_prior);
    s->expected_prior = expected;
    s->received_prior = s->received;
    long long lost_int = exp_int - rec_int;
    int fraction = (exp_int == 0 || lost_int <= 0) ? 0 : (int)((lost_int << 8) / exp_int);
    if (fraction > 255) fraction = 255;
    unsigned long highest = (unsigned long)(s->cycles + s->max_seq);
    long long jitter = s->jitter_q4 >> 4;
    UNLOCK_PY();
    return Py_BuildValue("iLkL", fraction, lost, highest, jitter);
}

/* The monotonic time to judge NACK timing by: ``now`` if given (tests), else the clock. */
static int nack_clock(PyObject *args, double *now) {
    PyObject *given = Py_None;
    if (!PyArg_ParseTuple(args, "|O", &given)) return -1;
    if (given == Py_None) {
        *now = monotonic_now();
        return 0;
    }
    *now = PyFloat_AsDouble(given);
    return *now == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* Missing packets whose ask went unanswered for longer than the wait: asked again now. One
 * asked NACK_MAX_TRIES times and still unanswered is given up (a keyframe must repair it). */
static PyObject *Track_nack_due(TrackObject *s, PyObject *args) {
    double now;
    if (nack_clock(args, &now) < 0) return NULL;
    uint16_t due[NACK_CAP];
    int n = 0, k = 0;
    LOCK_PY();
    double wait = nack_wait(s);
    for (int i = 0; i < s->nmiss; i++) {
        int is_due = now - s->miss_at[i] >= wait;
        if (is_due && s->miss_tries[i] >= NACK_MAX_TRIES) {
            if (s->counters != NULL) s->counters->nack_given_up++;
            continue;
        }
        s->miss_seq[k] = s->miss_seq[i];
        s->miss_tries[k] = s->miss_tries[i];
        s->miss_at[k] = s->miss_at[i];
        if (is_due) {
            s->miss_tries[k]++;
            s->miss_at[k] = now;
            due[n++] = s->miss_seq[k];
        }
        k++;
    }
    s->nmiss = k;
    UNLOCK_PY();
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (int i = 0; i < n; i++) PyList_SET_ITEM(out, i, PyLong_FromLong(due[i]));
    return out;
}

/* Seconds until nack_due has something to do (0: now), or None when nothing is missing. */
static PyObject *Track_nack_wait(TrackObject *s, PyObject *args) {
    double now;
    if (nack_clock(args, &now) < 0) return NULL;
    LOCK_PY();
    double wait = nack_wait(s), first = -1;
    for (int i = 0; i < s->nmiss; i++) {
        double at = s->miss_at[i] + wait - now;
        if (first < 0 || at < first) first = at < 0 ? 0 : at;
    }
    UNLOCK_PY();
    if (first < 0) Py_RETURN_NONE;
    return PyFloat_FromDouble(first);
}

static PyObject *Track_nack_answer(TrackObject *s, void *Py_UNUSED(closure)) {
    LOCK_PY();
    double answer = s->nack_answer;
    UNLOCK_PY();
    if (answer < 0) Py_RETURN_NONE;
    return PyFloat_FromDouble(answer);
}

static PyObject *Track_missing(TrackObject *s, PyObject *Py_UNUSED(ignored)) {
    uint16_t now[NACK_CAP];
    LOCK_PY();
    int n = s->nmiss;
    memcpy(now, s->miss_seq, sizeof(uint16_t) * (size_t)n);
    UNLOCK_PY();
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (int i = 0; i < n; i++) PyList_SET_ITEM(out, i, PyLong_FromLong(now[i]));
    return out;
}

static void track_drop_legs(TrackObject *self) {
    int n = self->nlegs;
    LegObject **legs = self->legs;
    self->nlegs = 0;
    self->caplegs = 0;
    self->legs = NULL;
    for (int i = 0; i < n; i++) Py_DECREF(legs[i]);
    PyMem_Free(legs);
}

static PyObject *Track_close(TrackObject *self, PyObject *Py_UNUSED(ignored)) {
    LOCK_PY();
    self->closed = 1;
    track_drop_legs(self);
    Py_CLEAR(self->tap);
    Py_CLEAR(self->on_keyframe);
    Py_CLEAR(self->on_missing);
    UNLOCK_PY();
    Py_RETURN_NONE;
}

static int Track_traverse(TrackObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->on_keyframe);
    Py_VISIT(self->on_missing);
    Py_VISIT(self->tap);
    Py_VISIT(self->counters);
    for (int i = 0; i < self->nlegs; i++) Py_VISIT(self->legs[i]);
    return 0;
}

static int Track_clear(TrackObject *self) {
    track_drop_legs(self);
    Py_CLEAR(self->tap);
    Py_CLEAR(self->on_keyframe);
    Py_CLEAR(self->on_missing);
    Py_CLEAR(self->counters);
    return 0;
}

static void Track_dealloc(TrackObject *self) {
    PyObject_GC_UnTrack(self);
    Track_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Track_get_nlegs(TrackObject *self, void *closure) {
    return PyLong_FromLong(self->nlegs);
}

/* A sender report that reached Python instead (aiortc's path, before the native transport). */
static PyObject *Track_set_sender_report(TrackObject *self, PyObject *args) {
    unsigned long long ntp;
    unsigned int rtp;
    double arrived;
    if (!PyArg_ParseTuple(args, "KId", &ntp, &rtp, &arrived)) return NULL;
    LOCK_PY();
    self->sr_ntp = ntp;
    self->sr_rtp = rtp;
    self->sr_arrived = arrived;
    self->has_sr = 1;
    UNLOCK_PY();
    Py_RETURN_NONE;
}

/* Deliver every packet to ``callable(bytes)`` from now on (None: stop). */
static PyObject *Track_set_tap(TrackObject *self, PyObject *arg) {
    PyObject *old;
    if (arg != Py_None && !PyCallable_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "tap must be callable or None");
        return NULL;
    }
    LOCK_PY();
    if (self->closed && arg != Py_None) {
        UNLOCK_PY();
        PyErr_SetString(PyExc_RuntimeError, "track is closed");
        return NULL;
    }
    old = self->tap;
    if (arg == Py_None) {
        self->tap = NULL;
    } else {
        Py_INCREF(arg);
        self->tap = arg;
    }
    UNLOCK_PY();
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyMethodDef Track_methods[] = {
    {"set_tap", (PyCFunction)Track_set_tap, METH_O,
     "set_tap(callable | None): every packet, as plain RTP bytes, to a Python subscriber."},
    {"set_sender_report", (PyCFunction)Track_set_sender_report, METH_VARARGS,
     "set_sender_report(ntp, rtp, arrived_unix): the publisher's SR seen by Python."},
    {"ingest", (PyCFunction)Track_ingest, METH_O,
     "Forward one plaintext RTP packet (the slow path: first packets, unknown SSRCs)."},
    {"set_codec", (PyCFunction)Track_set_codec, METH_VARARGS,
     "New payload types after a renegotiation: (payload_type, rtx_payload_type or -1)."},
    {"expect_codec", (PyCFunction)Track_expect_codec, METH_VARARGS,
     "Also accept these payload types (an offer proposing them is out): (pt, rtx_pt or -1)."},
    {"set_options", (PyCFunction)(void (*)(void))Track_set_options, METH_VARARGS | METH_KEYWORDS,
     "Set the media SSRC (when signalled) and the publisher's audio-level extension id."},
    {"add_leg", (PyCFunction)Track_add_leg, METH_O, "Start forwarding to a leg."},
    {"remove_leg", (PyCFunction)Track_remove_leg, METH_O, "Stop forwarding to a leg."},
    {"report", (PyCFunction)Track_report, METH_NOARGS,
     "(fraction_lost, packets_lost, highest_seq, jitter) for an RR, or None."},
    {"nack_due", (PyCFunction)Track_nack_due, METH_VARARGS,
     "nack_due(now=None): missing packets to NACK again now (each asked at most 5 times)."},
    {"nack_wait", (PyCFunction)Track_nack_wait, METH_VARARGS,
     "nack_wait(now=None): seconds until nack_due has work, or None if nothing is missing."},
    {"missing", (PyCFunction)Track_missing, METH_NOARGS, "Currently missing packets."},
    {"close", (PyCFunction)Track_close, METH_NOARGS, "Drop legs and callbacks; idempotent."},
    {NULL}};

static PyMemberDef Track_members[] = {
    {"media_ssrc", T_UINT, offsetof(TrackObject, media_ssrc), READONLY, "0 until known"},
    {"packets_received", T_ULONGLONG, offsetof(TrackObject, received), READONLY,
     "packets accepted"},
    {"closed", T_INT, offsetof(TrackObject, closed), READONLY, "closed"},
    {"tapped", T_OBJECT, offsetof(TrackObject, tap), READONLY,
     "the Python subscriber's callable, or None"},
    {"has_sr", T_INT, offsetof(TrackObject, has_sr), READONLY,
     "1 once a sender report of the publisher arrived"},
    {"sr_ntp", T_ULONGLONG, offsetof(TrackObject, sr_ntp), READONLY,
     "NTP timestamp of the publisher's latest SR"},
    {"sr_rtp", T_UINT, offsetof(TrackObject, sr_rtp), READONLY, "its RTP timestamp"},
    {"sr_arrived", T_DOUBLE, offsetof(TrackObject, sr_arrived), READONLY,
     "Unix time it arrived"},
    {NULL}};

static PyGetSetDef Track_getset[] = {
    {"leg_count", (getter)Track_get_nlegs, NULL, "number of legs", NULL},
    {"nack_answer", (getter)Track_nack_answer, NULL,
     "smoothed s from a NACK to its retransmission (None until measured)", NULL},
    {NULL}};

PyTypeObject TrackType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fortrolig.media._fastpath.Track",
    .tp_basicsize = sizeof(TrackObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One published RTP stream and the legs it is forwarded to.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Track_init,
    .tp_dealloc = (destructor)Track_dealloc,
    .tp_traverse = (traverseproc)Track_traverse,
    .tp_clear = (inquiry)Track_clear,
    .tp_methods = Track_methods,
    .tp_members = Track_members,
    .tp_getset = Track_getset,
};

