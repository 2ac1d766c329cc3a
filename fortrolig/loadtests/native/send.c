/* Send path: pacing the clip, sequence numbers and timestamps, SRTP protect, sendmmsg. */
#include "loadpath.h"

#define SLACK_S 0.004 /* frames due this soon are sent now: wake-ups of many senders coalesce
                       * (a browser's pacer also sends in 5 ms bursts) */
#define MAX_BEHIND_S 1.0 /* further behind (a stalled loop, a pause), skip instead of bursting */

typedef struct {
    struct mmsghdr msgs[SEND_BATCH];
    struct iovec iov[SEND_BATCH];
    int lens[SEND_BATCH];
    Sender *owner[SEND_BATCH]; /* NULL: an RTCP packet */
    int n;
} Batch;

static uint8_t tx_bufs[SEND_BATCH][BUF_SIZE]; /* the event loop's thread only (GIL held) */

void sender_reset(Sender *s) {
    Py_CLEAR(s->clip);
    memset(s, 0, sizeof(*s));
}

/* Send what the batch holds; count what the kernel took. */
static void batch_flush(PeerObject *p, Batch *b, unsigned long long *calls) {
    int done = 0;
    while (done < b->n) {
        int sent = sendmmsg(p->fd, b->msgs + done, (unsigned int)(b->n - done), MSG_DONTWAIT);
        (*calls)++;
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) break; /* EAGAIN or an error: the rest is lost, as on a full link */
        for (int i = done; i < done + sent; i++) {
            Sender *s = b->owner[i];
            if (s != NULL) {
                s->packets++;
                s->bytes += (unsigned long long)b->lens[i];
            }
        }
        done += sent;
    }
    for (int i = done; i < b->n; i++)
        if (b->owner[i] != NULL) b->owner[i]->send_errors++;
    b->n = 0;
}

/* A free slot of the batch (flushed when full). */
static uint8_t *batch_slot(PeerObject *p, Batch *b, unsigned long long *calls) {
    if (b->n == SEND_BATCH) batch_flush(p, b, calls);
    return tx_bufs[b->n];
}

static void batch_add(PeerObject *p, Batch *b, Sender *owner, int len) {
    int i = b->n++;
    b->iov[i].iov_base = tx_bufs[i];
    b->iov[i].iov_len = (size_t)len;
    memset(&b->msgs[i].msg_hdr, 0, sizeof(b->msgs[i].msg_hdr));
    b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
    b->msgs[i].msg_hdr.msg_iovlen = 1;
    b->msgs[i].msg_hdr.msg_name = &p->remote;
    b->msgs[i].msg_hdr.msg_namelen = p->remote_len;
    b->lens[i] = len;
    b->owner[i] = owner;
}

/* RTP header with the mid extension (one-byte form, RFC 8285); returns its length. */
static int write_header(Sender *s, uint8_t *o, int marker, uint32_t ts) {
    int ext = s->mid_id > 0 && s->mid_id < 15 && s->mid_len > 0;
    o[0] = (uint8_t)(0x80 | (ext ? 0x10 : 0));
    o[1] = (uint8_t)((marker ? 0x80 : 0) | (s->pt & 0x7F));
    wr16(o + 2, s->seq++);
    wr32(o + 4, ts);
    wr32(o + 8, s->ssrc);
    if (!ext) return 12;
    int body = 1 + s->mid_len;
    int words = (body + 3) / 4;
    wr16(o + 12, 0xBEDE);
    wr16(o + 14, (uint16_t)words);
    memset(o + 16, 0, (size_t)(4 * words));
    o[16] = (uint8_t)((s->mid_id << 4) | (s->mid_len - 1));
    memcpy(o + 17, s->mid, (size_t)s->mid_len);
    return 16 + 4 * words;
}

static void queue_packet(PeerObject *p, Batch *b, Sender *s, uint8_t *o, int len) {
    if (lp_protect(p->tx, o, &len) != 0) {
        s->send_errors++;
        return;
    }
    batch_add(p, b, s, len);
}

/* The clip position of the next frame: jump to the next keyframe when one was asked for. */
static int next_frame(Sender *s) {
    ClipObject *c = s->clip;
    int at = (int)(s->pos % (unsigned long long)c->nframes);
    if (c->video && s->keyframe_wanted) {
        s->keyframe_wanted = 0;
        for (int k = 0; k < c->nframes; k++) {
            int f = (at + k) % c->nframes;
            if (c->keyframe[f]) {
                s->pos += (unsigned long long)k;
                s->keyframes_forced++;
                return f;
            }
        }
    }
    return at;
}

/* One frame of the clip as RTP: VP8 frames split with a 4-byte payload descriptor (15-bit
 * picture id, RFC 7741), Opus frames whole. */
static void send_frame(PeerObject *p, Batch *b, Sender *s, unsigned long long *calls) {
    ClipObject *c = s->clip;
    int f = next_frame(s);
    s->pos++;
    uint32_t ts = s->ts_base + (uint32_t)(s->index * (unsigned long long)c->step);
    if (c->njitter > 0) ts += (uint32_t)c->jitter[s->index % (unsigned long long)c->njitter];
    s->index++;
    const uint8_t *data = c->data + c->offset[f];
    int size = (int)(c->offset[f + 1] - c->offset[f]);
    if (c->video && c->keyframe[f]) {
        int k = s->nkf < KF_LOG ? s->nkf++ : KF_LOG - 1; /* the log keeps the first ones */
        s->kf_frames[k] = s->frames;
        s->kf_packets[k] = s->generated;
    }
    s->frames++;
    s->last_ts = ts;
    s->last_sent_at = mono_now();
    int pos = 0;
    do {
        int chunk = c->video ? (size - pos < VP8_CHUNK ? size - pos : VP8_CHUNK) : size;
        int last = pos + chunk >= size;
        uint8_t *o = batch_slot(p, b, calls);
        int h = write_header(s, o, c->video ? last : 0, ts);
        if (c->video) {
            o[h] = (uint8_t)(0x80 | (pos == 0 ? 0x10 : 0)); /* X, S */
            o[h + 1] = 0x80;                                /* I: picture id present */
            o[h + 2] = (uint8_t)(0x80 | ((s->picture_id >> 8) & 0x7F));
            o[h + 3] = (uint8_t)(s->picture_id & 0xFF);
            h += 4;
        }
        memcpy(o + h, data + pos, (size_t)chunk);
        s->octets += (unsigned long long)chunk + (c->video ? 4u : 0u);
        s->generated++;
        queue_packet(p, b, s, o, h + chunk);
        pos += chunk;
    } while (pos < size);
    if (c->video) s->picture_id = (uint16_t)((s->picture_id + 1) & 0x7FFF);
}

/* An RTCP sender report (RFC 3550 6.4.1): lip sync and the LSR the server's RR answers. */
static void send_report(PeerObject *p, Batch *b, Sender *s, double now,
                        unsigned long long *calls) {
    uint8_t *o = batch_slot(p, b, calls);
    uint32_t sec, frac;
    ntp_now(&sec, &frac);
    double since = now - s->last_sent_at;
    o[0] = 0x80;
    o[1] = 200;
    wr16(o + 2, 6);
    wr32(o + 4, s->ssrc);
    wr32(o + 8, sec);
    wr32(o + 12, frac);
    wr32(o + 16, s->last_ts + (uint32_t)(since * s->clock));
    wr32(o + 20, (uint32_t)s->packets);
    wr32(o + 24, (uint32_t)s->octets);
    int len = 28;
    if (lp_protect_rtcp(p->tx, o, &len) != 0) return;
    batch_add(p, b, NULL, len);
}

/* Send every frame (and sender report) due by now + SLACK_S; returns when the next is due. */
double peer_send_due(PeerObject *p, double now, unsigned long long *calls) {
    Batch b;
    b.n = 0;
    double next = now + 3600.0;
    if (p->closed || p->fd < 0 || p->tx == NULL) return next;
    for (int k = 0; k < 2; k++) {
        Sender *s = &p->senders[k];
        ClipObject *c = s->clip;
        if (c == NULL) continue;
        double due = s->start + (double)s->index * c->period;
        if (p->paused) {
            /* time runs on while paused: resume without a burst, timestamps still advance */
            while (due <= now) due = s->start + (double)(++s->index) * c->period;
        } else {
            if (now - due > MAX_BEHIND_S) {
                s->index = (unsigned long long)((now - s->start) / c->period);
                due = s->start + (double)s->index * c->period;
            }
            while (due <= now + SLACK_S) {
                send_frame(p, &b, s, calls);
                due = s->start + (double)s->index * c->period;
            }
            if (s->packets + (unsigned long long)b.n > 0 && now >= s->next_sr) {
                send_report(p, &b, s, now, calls);
                s->next_sr = now + SR_INTERVAL_S;
            }
        }
        if (due < next) next = due;
    }
    if (b.n > 0) batch_flush(p, &b, calls);
    return next;
}
