/*
 * Declarations shared by the files of the load generator's native participant
 * (fortrolig/loadtests/native/, Python module fortrolig.loadtests._loadpath). See module.c.
 */
#ifndef FORTROLIG_LOADPATH_H
#define FORTROLIG_LOADPATH_H
#define _GNU_SOURCE /* recvmmsg, sendmmsg */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 2048      /* datagram buffer: MTU-sized packets plus SRTP trailer room */
#define MAX_RTP 1500       /* largest plaintext RTP packet accepted or built */
#define SRTP_ROOM 64       /* what srtp_protect may append (AEAD tag, SRTCP index) */
#define VP8_CHUNK 1100     /* VP8 frame bytes per packet (aiortc's packetizer uses ~1300) */
#define MAX_STREAMS 16     /* remote SSRCs counted per peer (media + RTX of a few tracks) */
#define RECV_BATCH 32      /* datagrams per recvmmsg */
#define SEND_BATCH 64      /* datagrams per sendmmsg */
#define DRAIN_MAX 256      /* datagrams per wake-up and socket */
#define KF_LOG 32          /* keyframes remembered per video sender */
#define FREEZE_GAP_S 0.5   /* a video gap longer than this is a freeze (as probe.RecvStats) */
#define SR_INTERVAL_S 1.0  /* sender reports per sender */
#define NTP_EPOCH_OFFSET 2208988800ULL

/* libsrtp 2 entry points, bound by init() to the library pylibsrtp loaded (as the SFU's
 * fortrolig/media/native/module.c does). */
typedef int (*srtp_fn)(void *ctx, void *hdr, int *len);
extern srtp_fn lp_protect, lp_unprotect, lp_protect_rtcp, lp_unprotect_rtcp;

/* Byte helpers: copied from fortrolig/media/native/dataplane.h (rd16, rd32, wr16, wr32). */
static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t rd32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xFF; }
static inline void wr32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24; p[1] = (v >> 16) & 0xFF; p[2] = (v >> 8) & 0xFF; p[3] = v & 0xFF;
}

static inline double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The middle 32 bits of the NTP time now (RTCP LSR/DLSR units: 1/65536 s). */
uint32_t ntp_middle_now(void);
void ntp_now(uint32_t *sec, uint32_t *frac);

/* The kinds of a payload type (Peer.set_payload_types) and of a stream. */
enum { K_NONE = 0, K_AUDIO = 1, K_VIDEO = 2, K_RTX = 3 };

/* A pre-encoded clip of one kind: frames back to back, replayed in a loop. */
typedef struct {
    PyObject_HEAD
    int video;
    int nframes;
    uint8_t *data;
    Py_ssize_t *offset;     /* nframes + 1 */
    uint8_t *keyframe;      /* per frame */
    int step;               /* RTP ticks per frame */
    double period;          /* seconds per frame */
    int njitter;
    int *jitter;            /* RTP ticks added to frame i's timestamp (i % njitter) */
} ClipObject;

/* Parsed plaintext RTP header (every offset checked against len). */
typedef struct {
    int marker, pt, payload, payload_len;
    uint16_t seq;
    uint32_t ts, ssrc;
} RtpInfo;

/* One paced outgoing track. */
typedef struct {
    ClipObject *clip;        /* NULL: not configured */
    uint32_t ssrc;
    int pt, clock;
    uint16_t seq;
    uint32_t ts_base;
    int mid_id, mid_len;
    uint8_t mid[16];
    double start;            /* monotonic time of frame 0 */
    unsigned long long index; /* frames due so far: drives timestamps and pacing */
    unsigned long long pos;   /* position in the clip (jumps on a keyframe request) */
    uint16_t picture_id;
    int keyframe_wanted;
    unsigned long long packets, bytes, frames, octets, keyframes_forced, send_errors;
    unsigned long long generated; /* RTP packets built (sent or not) */
    uint32_t last_ts;
    double last_sent_at, next_sr;
    int nkf;
    unsigned long long kf_frames[KF_LOG], kf_packets[KF_LOG];
} Sender;

/* What one peer received from one remote SSRC. */
typedef struct {
    uint32_t ssrc;
    int kind;
    unsigned long long packets, bytes, payload_bytes, frames, ts_frames;
    int have_seq;
    uint16_t base_seq, max_seq;
    unsigned long long cycles;
    double jitter;           /* RFC 3550, RTP ticks */
    int have_transit;
    double transit;
    int have_ts;
    uint32_t last_ts;
    double first_at, first_frame_at, last_frame_at;
    unsigned long long freezes;
    double freeze_s;
} Stream;

typedef struct {
    unsigned long long datagrams, rtp, rtcp, fallback, malformed, garbage, srtp_failures,
        unknown_pt, unknown_ssrc, pli, fir, truncated;
} RecvCounters;

struct EngineObject;

typedef struct PeerObject {
    PyObject_HEAD
    int fd, closed;
    struct EngineObject *engine; /* set while registered (borrowed: the engine holds us) */
    struct sockaddr_storage remote;
    socklen_t remote_len;
    void *rx, *tx;           /* srtp_t of aiortc's sessions */
    PyObject *keep;          /* keeps the pylibsrtp sessions (and so rx/tx) alive */
    PyObject *fallback;      /* callable(data: bytes, addr: tuple): STUN, DTLS */
    uint8_t pt_kind[128];
    Sender senders[2];       /* 0 audio, 1 video */
    int paused;
    int nstreams;
    Stream streams[MAX_STREAMS];
    RecvCounters rc;
    double rtt;              /* seconds, -1 until an RR answered one of our SRs */
} PeerObject;

typedef struct EngineObject {
    PyObject_HEAD
    int epfd, timerfd;
    int npeers, cap;
    PeerObject **peers;
    int paused;
    double armed_at;
    unsigned long long wakeups, ticks, sendmmsg_calls;
} EngineObject;

extern PyTypeObject ClipType, PeerType, EngineType;

/* recv.c */
int rtp_header(const uint8_t *d, int n, RtpInfo *r);
void peer_datagram(PeerObject *p, uint8_t *d, int n, const struct sockaddr_storage *from,
                   double now);
void peer_drain(PeerObject *p);
/* send.c */
double peer_send_due(PeerObject *p, double now, unsigned long long *calls);
void sender_reset(Sender *s);
/* peer.c */
void call_fallback(PeerObject *p, const uint8_t *d, int n, const struct sockaddr_storage *from);

#endif
