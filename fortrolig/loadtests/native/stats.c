/* Peer.stats(): what a peer sent and received, as plain Python objects (read now and then). */
#include "loadpath.h"

#define PUT(d, key, obj) \
    do { \
        PyObject *v_ = (obj); \
        if (v_ == NULL || PyDict_SetItemString((d), (key), v_) < 0) { \
            Py_XDECREF(v_); \
            goto fail; \
        } \
        Py_DECREF(v_); \
    } while (0)
#define ULL(x) PyLong_FromUnsignedLongLong(x)

static const char *kind_name(int kind) {
    return kind == K_AUDIO ? "audio" : kind == K_VIDEO ? "video" : kind == K_RTX ? "rtx" : "?";
}

static PyObject *stream_dict(const Stream *s) {
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    unsigned long long expected =
        s->have_seq ? s->cycles + s->max_seq - s->base_seq + 1 : 0;
    int clock = s->kind == K_AUDIO ? 48000 : 90000;
    PUT(d, "ssrc", PyLong_FromUnsignedLong(s->ssrc));
    PUT(d, "kind", PyUnicode_FromString(kind_name(s->kind)));
    PUT(d, "packets", ULL(s->packets));
    PUT(d, "bytes", ULL(s->bytes));
    PUT(d, "payload_bytes", ULL(s->payload_bytes));
    PUT(d, "frames", ULL(s->frames));
    PUT(d, "ts_frames", ULL(s->ts_frames));
    PUT(d, "expected", ULL(expected));
    PUT(d, "jitter_ms", PyFloat_FromDouble(1000.0 * s->jitter / clock));
    PUT(d, "first_at", s->packets ? PyFloat_FromDouble(s->first_at) : Py_NewRef(Py_None));
    PUT(d, "first_frame_at",
        s->frames ? PyFloat_FromDouble(s->first_frame_at) : Py_NewRef(Py_None));
    PUT(d, "freezes", ULL(s->freezes));
    PUT(d, "freeze_s", PyFloat_FromDouble(s->freeze_s));
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

static PyObject *sender_dict(const Sender *s) {
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    PyObject *log = PyList_New(0);
    if (log == NULL) goto fail;
    for (int i = 0; i < s->nkf; i++) {
        PyObject *entry = Py_BuildValue("(KK)", s->kf_frames[i], s->kf_packets[i]);
        if (entry == NULL || PyList_Append(log, entry) < 0) {
            Py_XDECREF(entry);
            Py_DECREF(log);
            goto fail;
        }
        Py_DECREF(entry);
    }
    PUT(d, "keyframes", log);
    PUT(d, "ssrc", PyLong_FromUnsignedLong(s->ssrc));
    PUT(d, "packets", ULL(s->packets));
    PUT(d, "bytes", ULL(s->bytes));
    PUT(d, "frames", ULL(s->frames));
    PUT(d, "generated", ULL(s->generated));
    PUT(d, "send_errors", ULL(s->send_errors));
    PUT(d, "keyframes_forced", ULL(s->keyframes_forced));
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

static PyObject *counters_dict(const RecvCounters *c) {
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    PUT(d, "datagrams", ULL(c->datagrams));
    PUT(d, "rtp", ULL(c->rtp));
    PUT(d, "rtcp", ULL(c->rtcp));
    PUT(d, "fallback", ULL(c->fallback));
    PUT(d, "malformed", ULL(c->malformed));
    PUT(d, "truncated", ULL(c->truncated));
    PUT(d, "garbage", ULL(c->garbage));
    PUT(d, "srtp_failures", ULL(c->srtp_failures));
    PUT(d, "unknown_pt", ULL(c->unknown_pt));
    PUT(d, "unknown_ssrc", ULL(c->unknown_ssrc));
    PUT(d, "pli", ULL(c->pli));
    PUT(d, "fir", ULL(c->fir));
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

PyObject *peer_stats(PeerObject *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    PyObject *streams = PyList_New(0);
    if (streams == NULL) goto fail;
    for (int i = 0; i < self->nstreams; i++) {
        PyObject *s = stream_dict(&self->streams[i]);
        if (s == NULL || PyList_Append(streams, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(streams);
            goto fail;
        }
        Py_DECREF(s);
    }
    PUT(d, "streams", streams);
    PUT(d, "received", counters_dict(&self->rc));
    static const char *kinds[2] = {"audio", "video"};
    for (int k = 0; k < 2; k++)
        if (self->senders[k].clip != NULL) PUT(d, kinds[k], sender_dict(&self->senders[k]));
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}
