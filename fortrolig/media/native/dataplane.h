/*
 * Declarations shared by the files of the SFU's native data plane (fortrolig/media/native/).
 * See module.c for what the data plane does and how it is locked.
 */
#ifndef FORTROLIG_DATAPLANE_H
#define FORTROLIG_DATAPLANE_H
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
#define NACK_MAX_TRIES 5     /* asks per missing packet; then only a keyframe helps */
#define NACK_FIRST_WAIT 0.1  /* s before asking again while no answer time is measured */
#define NACK_MIN_WAIT 0.02
#define NACK_MAX_WAIT 0.5
#define NACK_WINDOW 512
#define NTP_EPOCH_OFFSET 2208988800ULL

#define RECV_BATCH 16      /* datagrams per recvmmsg */

/* libsrtp 2 entry points (srtp_protect / srtp_unprotect), bound by init() to the library that
 * pylibsrtp loaded. */
typedef int (*srtp_fn)(void *ctx, void *hdr, int *len);
extern srtp_fn srtp_protect_fn;
extern srtp_fn srtp_unprotect_fn;
extern srtp_fn srtp_unprotect_rtcp_fn;

/* The data-plane lock (module.c explains it) and how deep this thread holds it. */
extern pthread_mutex_t plane_lock;
extern __thread int lock_depth;
#define LOCK() (pthread_mutex_lock(&plane_lock), lock_depth++)
#define UNLOCK() (lock_depth--, pthread_mutex_unlock(&plane_lock))

/* Take the lock from a Python entry point (GIL held). If another thread holds it, wait with
 * the GIL released: that thread may be Python code inside locked_call whose libsrtp call
 * (cffi) released the GIL and needs it back to return. */
static inline void lock_py(void) {
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
extern uint8_t rx_bufs[RECV_BATCH][BUF_SIZE];
extern uint8_t tx_buf[BUF_SIZE];

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


enum { KF_NONE = 0, KF_VP8 = 1, KF_H264 = 2 };
enum { EV_FALLBACK = 1, EV_MISSING = 2, EV_KEYFRAME = 3, EV_LEG_KEYFRAME = 4, EV_TAP = 5 };

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

typedef struct {
    PyObject_HEAD
    unsigned long long ingress_packets;
    unsigned long long forwarded_packets;
    unsigned long long forwarded_bytes;
    unsigned long long gated_drops;
    unsigned long long rtx_received;
    unsigned long long rtx_discarded;
    unsigned long long unknown_payload_type;
    unsigned long long srtp_failures;
    unsigned long long retransmitted;
    unsigned long long nack_unanswered;
    unsigned long long nack_given_up;
    unsigned long long malformed;
    unsigned long long send_errors;
    unsigned long long native_datagrams;
    unsigned long long rtcp_received;
    unsigned long long nack_received;
    unsigned long long pli_received;
    unsigned long long fir_received;
    unsigned long long remb_received;
} CountersObject;


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
    int nlegs_out, caplegs_out;
    struct LegObject **legs_out; /* legs sending on this transport: its RTCP is about them */
} TransportObject;

typedef struct TrackObject {
    PyObject_HEAD
    int closed;
    int keyframe_codec;
    int clock_rate;
    int pt;
    int rtx_pt;             /* -1: none */
    int alt_pt, alt_rtx_pt; /* also accepted (-1: none): the mapping before or after the
                               renegotiation in progress, whichever side switched first */
    uint32_t media_ssrc;    /* 0: learn from the first packet */
    int audio_level_id;     /* publisher's ssrc-audio-level id, 0: none */
    PyObject *on_keyframe;  /* callable(): a gated leg waits for a keyframe */
    PyObject *on_missing;   /* callable(list[int]): packets found missing (NACK) */
    PyObject *tap;          /* callable(bytes) or NULL: a Python subscriber (recorder) wants
                               every packet; NULL for tracks without one, which pay one test */
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
    double miss_at[NACK_CAP]; /* monotonic s of the latest ask */
    double nack_answer;       /* smoothed s from first ask to retransmission, -1 unknown */
    /* subscribers */
    int nlegs, caplegs;
    struct LegObject **legs;
    /* the publisher's latest sender report (lip sync, and LSR/DLSR of our receiver reports) */
    int has_sr;
    unsigned long long sr_ntp;
    uint32_t sr_rtp;
    double sr_arrived;      /* Unix time */
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
    /* what the subscriber's RTCP said about this leg */
    PyObject *on_keyframe;  /* callable(): the subscriber asked for a keyframe (PLI/FIR) */
    unsigned long long remb_bps;
    double remb_at;         /* monotonic seconds of the last REMB naming this leg */
    int fraction_lost;
    uint32_t jitter;
    double rtt;             /* seconds, -1 until known */
    uint32_t sr_lsr;        /* middle 32 bits of the NTP time of our last SR, and when */
    double sr_sent_at;
} LegObject;




/* Queued events; beyond that they are dropped and counted. Sized for a recorded room: every
 * packet of a tapped track is an event (~300/s for a recorded 1:1), and the event loop may be
 * busy for a few hundred milliseconds (a renegotiation) before it dispatches again. */
#define RING_SIZE 1024
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

extern PyTypeObject CountersType, TransportType, TrackType, LegType, PumpType;

/* rtp.c */
int vp8_keyframe_start(const uint8_t *p, Py_ssize_t n);
int h264_keyframe_start(const uint8_t *p, Py_ssize_t n);
int rtp_parse(uint8_t *d, int n, int audio_level_id, Rtp *r);
void realtime(double *unix_s, uint32_t *abs_send_time);
double monotonic_now(void);
/* rtcp.c: a plaintext (compound) RTCP packet from this transport's peer (lock held) */
void transport_rtcp(TransportObject *t, const uint8_t *d, int n);
/* leg.c */
void leg_forward(LegObject *l, const Rtp *r, uint16_t in_seq, int keyframe, double now,
                 uint32_t abs_send);
/* track.c */
void track_ingest(TrackObject *s, uint8_t *data, int len, TransportObject *origin,
                  uint32_t route);
void call_soon_safe(PyObject *callable, PyObject *arg);
void call_missing(TrackObject *s, const uint16_t *missing, int n);
/* transport.c */
int transport_send(TransportObject *t, uint8_t *buf, int len);
int transport_add_leg(TransportObject *t, LegObject *l);
void transport_remove_leg(TransportObject *t, LegObject *l);
int leg_retransmit(LegObject *self, uint16_t seq);
void call_fallback(TransportObject *self, const uint8_t *d, int n,
                   const struct sockaddr_storage *from);
void transport_drain(TransportObject *self);
/* pump.c: queue an event for the Python thread, forget a transport's socket (lock held) */
void pump_enqueue(PumpObject *p, TransportObject *t, int kind, uint32_t ssrc,
                  const uint8_t *data, int len, const struct sockaddr_storage *addr);
void pump_detach(PumpObject *p, TransportObject *t);

#endif
