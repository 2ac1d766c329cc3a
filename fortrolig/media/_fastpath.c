/*
 * The SFU's native data plane: per-datagram work without the Python interpreter.
 *
 * Python decides everything that happens rarely (negotiation, RTCP feedback, keyframe-request
 * rate limits, sender reports); this module does what happens for every media packet:
 *
 *   Transport.on_readable()   registered with the event loop instead of asyncio's own reader:
 *                             drains the socket; SRTP-protected RTP of a known SSRC is
 *                             unprotected and handed to its Track; anything else (STUN, DTLS,
 *                             SRTCP, unknown SSRCs) goes to a Python fallback unchanged.
 *   Track                     one published stream: RTX unwrap, receive statistics (RFC 3550),
 *                             missing-packet tracking for NACKs, keyframe detection, fan-out.
 *   Leg                       one subscriber of a track: keyframe gate, SSRC / sequence /
 *                             timestamp / payload type / header-extension rewrite, a packet
 *                             cache answering NACKs over RTX, SRTP protect and sendto.
 *
 * SRTP uses the very libsrtp sessions aiortc created (pylibsrtp's srtp_t and its exported
 * srtp_protect / srtp_unprotect), so there is one replay window and one key schedule per
 * direction. Everything runs on the event-loop thread with the GIL held: no locking, and no
 * Python code runs while the C state is being walked, except the explicit callbacks, which are
 * made only after a fan-out has finished.
 *
 * Every length is checked before it is read: the input is attacker-controlled.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 2048       /* datagram buffer: MTU-sized packets plus SRTP trailer room */
#define MAX_RTP 1500        /* largest plaintext RTP packet forwarded */
#define CACHE_SIZE 512      /* packets per video leg: ~1.5 s at 1 Mbit/s, enough for NACKs */
#define MAX_ROUTES 16       /* SSRCs per transport: media + RTX of a few tracks */
#define DRAIN_MAX 64        /* datagrams per wake-up, so one busy socket cannot starve others */
#define NACK_CAP 256        /* missing sequence numbers remembered per stream */
#define NACK_MAX_GAP 128    /* a wider jump is a stream restart, not loss */
#define NACK_MAX_TRIES 3
#define NACK_WINDOW 512
#define NTP_EPOCH_OFFSET 2208988800ULL

typedef int (*srtp_fn)(void *ctx, void *hdr, int *len);

/* libsrtp entry points, taken from pylibsrtp's loaded library by init(). */
static srtp_fn srtp_protect_fn = NULL;
static srtp_fn srtp_unprotect_fn = NULL;

/* One lock for all data-plane state of the process. The pump thread holds it while it handles
 * a wake-up's datagrams; every Python entry point that reads or changes shared state (and every
 * use of the SRTP sessions from Python, through locked_call) takes it too. It is recursive
 * because inline-mode callbacks into Python may call back into locked methods. The pump thread
 * never takes the GIL, so holding the GIL while waiting for this lock cannot deadlock. */
static pthread_mutex_t plane_lock;
static __thread int lock_depth; /* how often this thread holds plane_lock (it is recursive) */
#define LOCK() (pthread_mutex_lock(&plane_lock), lock_depth++)
#define UNLOCK() (lock_depth--, pthread_mutex_unlock(&plane_lock))

/* Take the lock from a Python entry point (GIL held). If another thread holds it, wait with
 * the GIL released: that thread may be Python code inside locked_call whose libsrtp call
 * (cffi) released the GIL and needs it back to return. */
static void lock_py(void) {
    if (pthread_mutex_trylock(&plane_lock) != 0) {
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&plane_lock);
        Py_END_ALLOW_THREADS
    }
    lock_depth++;
}
#define LOCK_PY() lock_py()
#define UNLOCK_PY() UNLOCK()

/* Receive buffers of a drain and the buffer a packet is rewritten into: shared by every
 * transport, used only while plane_lock is held. */
#define RECV_BATCH 16
static uint8_t rx_bufs[RECV_BATCH][BUF_SIZE];
static uint8_t tx_buf[BUF_SIZE];

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t rd32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xFF; }
static inline void wr32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24; p[1] = (v >> 16) & 0xFF; p[2] = (v >> 8) & 0xFF; p[3] = v & 0xFF;
}
static inline int seq_newer(uint16_t a, uint16_t b) {
    return a != b && (uint16_t)(a - b) < 0x8000;
}

/* ------------------------------------------------------------------------------------------
 * Payload inspection: where keyframes start (VP8: RFC 7741, H.264: RFC 6184).
 * ---------------------------------------------------------------------------------------- */

static int vp8_keyframe_start(const uint8_t *p, Py_ssize_t n) {
    if (n < 1) return 0;
    uint8_t b0 = p[0];
    if (!(b0 & 0x10) || (b0 & 0x07)) return 0; /* S=1 and partition index 0 */
    Py_ssize_t i = 1;
    if (b0 & 0x80) { /* X: extended control bits */
        if (n < 2) return 0;
        uint8_t x = p[1];
        i = 2;
        if (x & 0x80) { /* I: PictureID, 7 or 15 bits */
            if (n <= i) return 0;
            i += (p[i] & 0x80) ? 2 : 1;
        }
        if (x & 0x40) i += 1; /* L: TL0PICIDX */
        if (x & 0x30) i += 1; /* T or K */
    }
    if (n <= i) return 0;
    return !(p[i] & 0x01); /* P bit of the VP8 payload header: 0 = keyframe */
}

static int h264_keyframe_start(const uint8_t *p, Py_ssize_t n) {
    if (n < 1) return 0;
    int type = p[0] & 0x1F;
    if (type == 5 || type == 7) return 1; /* IDR slice or SPS */
    if (type == 24) {                     /* STAP-A: (16-bit size, NAL unit)* */
        Py_ssize_t i = 1;
        while (i + 2 < n) {
            Py_ssize_t size = rd16(p + i);
            i += 2;
            if (size == 0 || i + size > n) return 0;
            int t = p[i] & 0x1F;
            if (t == 5 || t == 7) return 1;
            i += size;
        }
        return 0;
    }
    if (type == 28) /* FU-A: start bit and the original type in the FU header */
        return n > 1 && (p[1] & 0x80) && (p[1] & 0x1F) == 5;
    return 0;
}

enum { KF_NONE = 0, KF_VP8 = 1, KF_H264 = 2 };

/* ------------------------------------------------------------------------------------------
 * RTP header parsing.
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    uint8_t *data;
    int len;
    int cc;            /* CSRC count */
    int marker;
    int pt;
    uint16_t seq;
    uint32_t ts;
    uint32_t ssrc;
    int payload;       /* offset of the payload */
    int payload_end;   /* end of the payload (before padding) */
    int has_padding;
    int audio_level;   /* ssrc-audio-level byte, -1 when absent */
} Rtp;

/* Parse a plaintext RTP packet; 0 on success, -1 if malformed. */
static int rtp_parse(uint8_t *d, int n, int audio_level_id, Rtp *r) {
    if (n < 12 || (d[0] >> 6) != 2) return -1;
    r->data = d;
    r->len = n;
    r->cc = d[0] & 0x0F;
    r->marker = d[1] >> 7;
    r->pt = d[1] & 0x7F;
    r->seq = rd16(d + 2);
    r->ts = rd32(d + 4);
    r->ssrc = rd32(d + 8);
    r->audio_level = -1;
    int pos = 12 + 4 * r->cc;
    if (pos > n) return -1;
    if (d[0] & 0x10) {
        if (pos + 4 > n) return -1;
        int profile = rd16(d + pos);
        int words = rd16(d + pos + 2);
        int start = pos + 4, end = start + 4 * words;
        if (end > n) return -1;
        if (audio_level_id > 0 && (profile == 0xBEDE || (profile & 0xFFF0) == 0x1000)) {
            int two = profile != 0xBEDE;
            int i = start;
            while (i < end) {
                int id, len;
                if (two) {
                    if (d[i] == 0) { i++; continue; }
                    if (i + 2 > end) break;
                    id = d[i];
                    len = d[i + 1];
                    i += 2;
                } else {
                    if (d[i] == 0) { i++; continue; }
                    id = d[i] >> 4;
                    len = (d[i] & 0x0F) + 1;
                    if (id == 15) break;
                    i += 1;
                }
                if (i + len > end) break;
                if (id == audio_level_id && len >= 1) r->audio_level = d[i];
                i += len;
            }
        }
        pos = end;
    }
    r->payload = pos;
    r->payload_end = n;
    r->has_padding = (d[0] & 0x20) != 0;
    if (r->has_padding) {
        int pad = d[n - 1];
        if (pad == 0 || pos + pad > n) return -1;
        r->payload_end = n - pad;
    }
    return 0;
}

static void realtime(double *unix_s, uint32_t *abs_send_time) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    *unix_s = (double)t.tv_sec + t.tv_nsec / 1e9;
    /* abs-send-time: 6.18 fixed-point seconds of the NTP time, 24 bits */
    uint64_t secs = (uint64_t)t.tv_sec + NTP_EPOCH_OFFSET;
    uint64_t frac = ((uint64_t)t.tv_nsec << 18) / 1000000000ULL;
    *abs_send_time = (uint32_t)(((secs << 18) | frac) & 0xFFFFFF);
}

/* ------------------------------------------------------------------------------------------
 * Counters: totals since start, shared by every object of one SFU, read at scrape time.
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    unsigned long long ingress_packets;
    unsigned long long forwarded_packets;
    unsigned long long forwarded_bytes;
    unsigned long long gated_drops;
    unsigned long long rtx_received;
    unsigned long long unknown_payload_type;
    unsigned long long srtp_failures;
    unsigned long long retransmitted;
    unsigned long long nack_unanswered;
    unsigned long long malformed;
    unsigned long long send_errors;
    unsigned long long native_datagrams;
} CountersObject;

#define COUNTER(name, doc) {#name, T_ULONGLONG, offsetof(CountersObject, name), 0, doc}
static PyMemberDef Counters_members[] = {
    COUNTER(ingress_packets, "RTP packets accepted from publishers"),
    COUNTER(forwarded_packets, "RTP packets sent to subscribers"),
    COUNTER(forwarded_bytes, "bytes on the wire sent to subscribers"),
    COUNTER(gated_drops, "packets held back until a keyframe"),
    COUNTER(rtx_received, "retransmissions received from publishers"),
    COUNTER(unknown_payload_type, "packets with a payload type not negotiated"),
    COUNTER(srtp_failures, "datagrams failing SRTP authentication or replay check"),
    COUNTER(retransmitted, "packets resent to subscribers over RTX"),
    COUNTER(nack_unanswered, "NACKed packets no longer in the cache"),
    COUNTER(malformed, "RTP packets with an impossible header"),
    COUNTER(send_errors, "sendto failures (socket buffer full, network down)"),
    COUNTER(native_datagrams, "media datagrams handled without Python"),
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

static PyTypeObject CountersType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fortrolig.media._fastpath.Counters",
    .tp_basicsize = sizeof(CountersObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Media-path counters maintained by the native data plane.",
    .tp_new = PyType_GenericNew,
    .tp_members = Counters_members,
    .tp_methods = Counters_methods,
};

/* ------------------------------------------------------------------------------------------
 * Object layouts (Transport, Track and Leg refer to each other).
 * ---------------------------------------------------------------------------------------- */

struct TrackObject;
struct LegObject;

struct PumpObject;

typedef struct {
    PyObject_HEAD
    int fd;                 /* our dup() of the aioice socket: closing it is ours to do */
    struct PumpObject *pump; /* set while a pump thread reads this socket (borrowed) */
    uint32_t slot, gen;     /* this transport's slot in the pump */
    int closed;
    struct sockaddr_storage remote;
    socklen_t remote_len;
    void *rx;               /* srtp_t for unprotect */
    void *tx;               /* srtp_t for protect */
    PyObject *keep;         /* keeps the pylibsrtp sessions (and so rx/tx) alive */
    PyObject *fallback;     /* callable(data: bytes, addr: tuple) for everything not ours */
    CountersObject *counters;
    int nroutes;
    uint32_t route_ssrc[MAX_ROUTES];
    struct TrackObject *route_track[MAX_ROUTES];
} TransportObject;

typedef struct TrackObject {
    PyObject_HEAD
    int closed;
    int keyframe_codec;
    int clock_rate;
    int pt;
    int rtx_pt;             /* -1: none */
    uint32_t media_ssrc;    /* 0: learn from the first packet */
    int audio_level_id;     /* publisher's ssrc-audio-level id, 0: none */
    PyObject *on_keyframe;  /* callable(): a gated leg waits for a keyframe */
    PyObject *on_missing;   /* callable(list[int]): packets found missing (NACK) */
    CountersObject *counters;
    /* receive statistics, as RFC 3550 A.1/A.3/A.8 */
    int have_seq;
    uint16_t base_seq, max_seq;
    uint32_t cycles;
    unsigned long long received;
    long long jitter_q4;
    int have_last;
    long long last_arrival;
    uint32_t last_ts;
    unsigned long long expected_prior, received_prior;
    /* NACK tracking (video) */
    int nack;
    int nack_have;
    uint16_t nack_max;
    int nmiss;
    uint16_t miss_seq[NACK_CAP];
    uint8_t miss_tries[NACK_CAP];
    /* subscribers */
    int nlegs, caplegs;
    struct LegObject **legs;
} TrackObject;

typedef struct LegObject {
    PyObject_HEAD
    int closed, attached, started, gated, want_keyframe;
    TransportObject *out;
    CountersObject *counters;
    uint32_t ssrc, rtx_ssrc;
    int pt, rtx_pt;
    uint16_t seq_start, seq_delta, first_in, rtx_seq;
    uint32_t ts_delta;
    uint8_t mid[255];
    int mid_len, mid_id, abs_send_id, audio_level_id;
    unsigned long long packets, octets;
    uint32_t last_in_ts;
    double last_arrival;
    uint8_t *cache[CACHE_SIZE];
    uint16_t cache_len[CACHE_SIZE];
    uint16_t cache_cap[CACHE_SIZE];
    int caching;
} LegObject;

static PyTypeObject TransportType, TrackType, LegType;

/* Protect in place and send; returns bytes on the wire, 0 when nothing was sent. */
static int transport_send(TransportObject *t, uint8_t *buf, int len) {
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
static void leg_forward(LegObject *l, const Rtp *r, uint16_t in_seq,
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
    return 0;
}

static PyObject *Leg_attach(LegObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"transport", "ssrc", "rtx_ssrc", "payload_type", "rtx_payload_type",
                            "mid", "mid_id", "abs_send_time_id", "audio_level_id", NULL};
    PyObject *transport;
    unsigned int ssrc, rtx_ssrc;
    int pt, rtx_pt, mid_id, abs_id, level_id;
    Py_buffer mid;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!IIiiy*iii", names, &TransportType, &transport,
                                     &ssrc, &rtx_ssrc, &pt, &rtx_pt, &mid, &mid_id, &abs_id,
                                     &level_id))
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
    memcpy(self->mid, mid.buf, (size_t)mid.len);
    self->mid_len = (int)mid.len;
    PyBuffer_Release(&mid);
    Py_INCREF(transport);
    Py_XSETREF(self->out, (TransportObject *)transport);
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
static int leg_retransmit(LegObject *self, uint16_t seq) {
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
    LOCK_PY();
    self->closed = 1;
    self->attached = 0;
    TransportObject *out = self->out;
    self->out = NULL;
    leg_free_cache(self);
    UNLOCK_PY();
    Py_XDECREF(out);
    Py_RETURN_NONE;
}

static PyObject *Leg_get_forwarding(LegObject *self, void *closure) {
    return PyBool_FromLong(self->started);
}

static int Leg_traverse(LegObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->out);
    Py_VISIT(self->counters);
    return 0;
}

static int Leg_clear(LegObject *self) {
    Py_CLEAR(self->out);
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
    {NULL}};

static PyGetSetDef Leg_getset[] = {
    {"forwarding", (getter)Leg_get_forwarding, NULL,
     "True once the keyframe gate opened (video) or the first packet passed (audio)", NULL},
    {NULL}};

static PyTypeObject LegType = {
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

/* Record a received sequence number; returns how many new missing ones were appended to
 * out (at most NACK_MAX_GAP - 1). */
static int nack_add(TrackObject *s, uint16_t seq, uint16_t *out) {
    if (!s->nack_have) {
        s->nack_have = 1;
        s->nack_max = seq;
        return 0;
    }
    if (!seq_newer(seq, s->nack_max)) { /* a retransmission or a late packet */
        for (int i = 0; i < s->nmiss; i++) {
            if (s->miss_seq[i] == seq) {
                memmove(s->miss_seq + i, s->miss_seq + i + 1, (size_t)(s->nmiss - i - 1) * 2);
                memmove(s->miss_tries + i, s->miss_tries + i + 1, (size_t)(s->nmiss - i - 1));
                s->nmiss--;
                break;
            }
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
            k++;
        }
    }
    s->nmiss = k;
    int over = s->nmiss + fresh - NACK_CAP;
    if (over > 0) {
        memmove(s->miss_seq, s->miss_seq + over, (size_t)(s->nmiss - over) * 2);
        memmove(s->miss_tries, s->miss_tries + over, (size_t)(s->nmiss - over));
        s->nmiss -= over;
    }
    for (int i = 0; i < fresh; i++) {
        s->miss_seq[s->nmiss] = out[i];
        s->miss_tries[s->nmiss] = 1;
        s->nmiss++;
    }
    return fresh;
}

static void call_soon_safe(PyObject *callable, PyObject *arg) {
    if (callable == NULL || callable == Py_None) return;
    PyObject *res = arg ? PyObject_CallOneArg(callable, arg) : PyObject_CallNoArgs(callable);
    if (res == NULL) PyErr_WriteUnraisable(callable);
    Py_XDECREF(res);
}

enum { EV_FALLBACK = 1, EV_MISSING = 2, EV_KEYFRAME = 3 };

/* Queue an event for the Python thread (pump mode; lock held). */
static void pump_enqueue(struct PumpObject *p, TransportObject *t, int kind, uint32_t ssrc,
                         const uint8_t *data, int len, const struct sockaddr_storage *addr);
/* Forget a transport's socket (lock held); the caller drops the pump's reference. */
static void pump_detach(struct PumpObject *p, TransportObject *t);

static void call_missing(TrackObject *s, const uint16_t *missing, int n) {
    PyObject *lst = PyList_New(n);
    if (lst == NULL) {
        PyErr_Clear();
        return;
    }
    for (int i = 0; i < n; i++) PyList_SET_ITEM(lst, i, PyLong_FromLong(missing[i]));
    call_soon_safe(s->on_missing, lst);
    Py_DECREF(lst);
}

/* One plaintext RTP packet of this track: statistics, NACK, fan-out.
 *
 * ``origin`` is the transport it arrived on and ``route`` the SSRC it was routed by. When the
 * origin is read by a pump thread (no GIL), Python callbacks are queued instead of called and
 * no reference count is touched. Otherwise (GIL held) they are called at once. */
static void track_ingest(TrackObject *s, uint8_t *data, int len, TransportObject *origin,
                         uint32_t route) {
    Rtp r;
    struct PumpObject *pump = origin != NULL ? origin->pump : NULL;
    if (s->closed || s->counters == NULL) return; /* closed, or never initialised */
    if (rtp_parse(data, len, s->audio_level_id, &r) != 0) {
        s->counters->malformed++;
        return;
    }
    uint16_t seq = r.seq;
    if (s->rtx_pt >= 0 && r.pt == s->rtx_pt) {
        if (r.payload_end - r.payload < 2 || s->media_ssrc == 0) return; /* padding probe */
        seq = rd16(data + r.payload);
        r.payload += 2;
        r.pt = s->pt;
        r.ssrc = s->media_ssrc;
        s->counters->rtx_received++;
    } else if (r.pt != s->pt) {
        s->counters->unknown_payload_type++;
        return;
    } else if (s->media_ssrc == 0) {
        s->media_ssrc = r.ssrc;
    } else if (r.ssrc != s->media_ssrc) {
        return;
    }
    s->counters->ingress_packets++;
    double now;
    uint32_t abs_send;
    realtime(&now, &abs_send);
    stats_add(s, seq, r.ts, now);
    if (pump == NULL) Py_INCREF(s); /* a callback may close (and release) the track */
    if (s->nack) {
        uint16_t missing[NACK_MAX_GAP];
        int n = nack_add(s, seq, missing);
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
    self->nack = nack;
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
    self->pt = pt;
    self->rtx_pt = rtx_pt;
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

/* Missing packets to ask for again (each at most NACK_MAX_TRIES times in all). */
static PyObject *Track_nack_due(TrackObject *s, PyObject *Py_UNUSED(ignored)) {
    uint16_t due[NACK_CAP];
    int k = 0;
    LOCK_PY();
    for (int i = 0; i < s->nmiss; i++) {
        if (s->miss_tries[i] >= NACK_MAX_TRIES) continue;
        s->miss_tries[i]++;
        s->miss_seq[k] = s->miss_seq[i];
        s->miss_tries[k] = s->miss_tries[i];
        due[k++] = s->miss_seq[i];
    }
    s->nmiss = k;
    UNLOCK_PY();
    PyObject *out = PyList_New(k);
    if (out == NULL) return NULL;
    for (int i = 0; i < k; i++) PyList_SET_ITEM(out, i, PyLong_FromLong(due[i]));
    return out;
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
    Py_CLEAR(self->on_keyframe);
    Py_CLEAR(self->on_missing);
    UNLOCK_PY();
    Py_RETURN_NONE;
}

static int Track_traverse(TrackObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->on_keyframe);
    Py_VISIT(self->on_missing);
    Py_VISIT(self->counters);
    for (int i = 0; i < self->nlegs; i++) Py_VISIT(self->legs[i]);
    return 0;
}

static int Track_clear(TrackObject *self) {
    track_drop_legs(self);
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

static PyMethodDef Track_methods[] = {
    {"ingest", (PyCFunction)Track_ingest, METH_O,
     "Forward one plaintext RTP packet (the slow path: first packets, unknown SSRCs)."},
    {"set_codec", (PyCFunction)Track_set_codec, METH_VARARGS,
     "New payload types after a renegotiation: (payload_type, rtx_payload_type or -1)."},
    {"set_options", (PyCFunction)(void (*)(void))Track_set_options, METH_VARARGS | METH_KEYWORDS,
     "Set the media SSRC (when signalled) and the publisher's audio-level extension id."},
    {"add_leg", (PyCFunction)Track_add_leg, METH_O, "Start forwarding to a leg."},
    {"remove_leg", (PyCFunction)Track_remove_leg, METH_O, "Stop forwarding to a leg."},
    {"report", (PyCFunction)Track_report, METH_NOARGS,
     "(fraction_lost, packets_lost, highest_seq, jitter) for an RR, or None."},
    {"nack_due", (PyCFunction)Track_nack_due, METH_NOARGS,
     "Missing packets to NACK again (each at most 3 times)."},
    {"missing", (PyCFunction)Track_missing, METH_NOARGS, "Currently missing packets."},
    {"close", (PyCFunction)Track_close, METH_NOARGS, "Drop legs and callbacks; idempotent."},
    {NULL}};

static PyMemberDef Track_members[] = {
    {"media_ssrc", T_UINT, offsetof(TrackObject, media_ssrc), READONLY, "0 until known"},
    {"packets_received", T_ULONGLONG, offsetof(TrackObject, received), READONLY,
     "packets accepted"},
    {"closed", T_INT, offsetof(TrackObject, closed), READONLY, "closed"},
    {NULL}};

static PyGetSetDef Track_getset[] = {
    {"leg_count", (getter)Track_get_nlegs, NULL, "number of legs", NULL}, {NULL}};

static PyTypeObject TrackType = {
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
    if (srtp_protect_fn == NULL || srtp_unprotect_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "init() was not called");
        return -1;
    }
    if (rx == 0 || tx == 0 || port <= 0 || port > 65535 || !PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_ValueError, "bad transport parameters");
        return -1;
    }
    if (parse_address(host, port, &self->remote, &self->remote_len) < 0) return -1;
    if (self->fd > 0) close(self->fd);
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

static void call_fallback(TransportObject *self, const uint8_t *d, int n,
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
static void transport_drain(TransportObject *self) {
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
            if (n >= 12 && d[0] >= 128 && d[0] < 192 && !(d[1] >= 192 && d[1] <= 223)) {
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
    {"close", (PyCFunction)Transport_close, METH_NOARGS,
     "Close our socket descriptor and drop routes; idempotent."},
    {NULL}};

static PyMemberDef Transport_members[] = {
    {"fd", T_INT, offsetof(TransportObject, fd), READONLY,
     "this transport's own descriptor of the socket (-1 once closed)"},
    {"closed", T_INT, offsetof(TransportObject, closed), READONLY, "closed"},
    {NULL}};

static PyTypeObject TransportType = {
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

/* ------------------------------------------------------------------------------------------
 * Pump: a native thread that reads every registered transport's socket with its own epoll,
 * without the GIL, so a media datagram costs no Python event-loop wake-up. What Python must see
 * (STUN, DTLS, SRTCP, unrouted SSRCs, NACK lists, keyframe requests) is queued and announced
 * on an eventfd the event loop watches; ``dispatch()`` delivers it on the Python thread.
 * ---------------------------------------------------------------------------------------- */

#define RING_SIZE 256          /* queued events; beyond that they are dropped and counted */
#define WAKE_KEY UINT64_MAX    /* epoll key of the stop eventfd */

typedef struct {
    uint32_t slot, gen;
    int kind;
    uint32_t ssrc;
    int len;
    int has_addr;
    struct sockaddr_storage addr;
    uint8_t data[BUF_SIZE];
} Event;

typedef struct PumpObject {
    PyObject_HEAD
    int epfd, wakefd, notifyfd;
    int running;
    volatile int stop;
    pthread_t thread;
    int nslots;
    TransportObject **slots;   /* strong references, changed under the lock */
    uint32_t *gens;
    uint32_t next_gen;
    Event *ring;
    int head, count, notified;
    unsigned long long wakeups, dropped_events;
} PumpObject;

static PyTypeObject PumpType;

static void pump_enqueue(PumpObject *p, TransportObject *t, int kind, uint32_t ssrc,
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

static void pump_detach(PumpObject *self, TransportObject *t) {
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
        if (e->slot < (uint32_t)self->nslots && self->gens[e->slot] == e->gen)
            t = self->slots[e->slot];
        if (t != NULL && e->kind != EV_FALLBACK) {
            for (int i = 0; i < t->nroutes; i++)
                if (t->route_ssrc[i] == e->ssrc) { track = t->route_track[i]; break; }
        }
        Py_XINCREF(t);
        Py_XINCREF(track);
        UNLOCK_PY();
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

static PyTypeObject PumpType = {
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

/* ------------------------------------------------------------------------------------------
 * Module
 * ---------------------------------------------------------------------------------------- */

static PyObject *mod_init(PyObject *m, PyObject *args) {
    unsigned long long protect, unprotect;
    if (!PyArg_ParseTuple(args, "KK", &protect, &unprotect)) return NULL;
    if (protect == 0 || unprotect == 0) {
        PyErr_SetString(PyExc_ValueError, "null libsrtp function");
        return NULL;
    }
    srtp_protect_fn = (srtp_fn)(uintptr_t)protect;
    srtp_unprotect_fn = (srtp_fn)(uintptr_t)unprotect;
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
     "init(srtp_protect_address, srtp_unprotect_address): bind to pylibsrtp's libsrtp."},
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
    return m;
}
