/* Receive path: batched reads, SRTP unprotect, counting without depacketising.
 *
 * Every length read from a datagram is checked before it is used: the input comes from the
 * network (the server under test, or anyone who can reach the port). */
#include "loadpath.h"

static uint8_t rx_bufs[RECV_BATCH][BUF_SIZE]; /* the event loop's thread only (GIL held) */

/* Plaintext RTP header: payload offset and length after CSRCs, extension and padding.
 * Returns 0, or -1 when the header lies about a length. */
int rtp_header(const uint8_t *d, int n, RtpInfo *r) {
    if (n < 12 || (d[0] >> 6) != 2) return -1;
    int pos = 12 + 4 * (d[0] & 0x0F);
    if (pos > n) return -1;
    if (d[0] & 0x10) {
        if (pos + 4 > n) return -1;
        pos += 4 + 4 * rd16(d + pos + 2);
        if (pos > n) return -1;
    }
    int pad = 0;
    if (d[0] & 0x20) {
        if (n <= pos) return -1;
        pad = d[n - 1];
        if (pad == 0 || pos + pad > n) return -1;
    }
    r->marker = d[1] >> 7;
    r->pt = d[1] & 0x7F;
    r->seq = rd16(d + 2);
    r->ts = rd32(d + 4);
    r->ssrc = rd32(d + 8);
    r->payload = pos;
    r->payload_len = n - pos - pad;
    return 0;
}

static Stream *stream_of(PeerObject *p, uint32_t ssrc, int pt) {
    for (int i = 0; i < p->nstreams; i++)
        if (p->streams[i].ssrc == ssrc) return &p->streams[i];
    int kind = p->pt_kind[pt];
    if (kind == K_NONE) {
        p->rc.unknown_pt++;
        return NULL;
    }
    if (p->nstreams == MAX_STREAMS) {
        p->rc.unknown_ssrc++;
        return NULL;
    }
    Stream *s = &p->streams[p->nstreams++];
    memset(s, 0, sizeof(*s));
    s->ssrc = ssrc;
    s->kind = kind;
    return s;
}

static void stream_frame(Stream *s, double now) {
    s->frames++;
    if (s->frames == 1) s->first_frame_at = now;
    else if (s->kind == K_VIDEO && now - s->last_frame_at > FREEZE_GAP_S) {
        s->freezes++;
        s->freeze_s += now - s->last_frame_at;
    }
    s->last_frame_at = now;
}

/* RFC 3550 A.1 (sequence), A.8 (jitter); frames by the marker bit and by timestamp change. */
static void stream_add(Stream *s, const RtpInfo *r, int wire, double now) {
    s->packets++;
    s->bytes += (unsigned long long)wire;
    s->payload_bytes += (unsigned long long)r->payload_len;
    if (s->packets == 1) s->first_at = now;
    if (s->kind == K_RTX) return; /* retransmissions: counted, not sequenced */
    if (!s->have_seq) {
        s->have_seq = 1;
        s->base_seq = s->max_seq = r->seq;
    } else if ((uint16_t)(r->seq - s->max_seq) < 0x8000) {
        if (r->seq < s->max_seq) s->cycles += 1 << 16;
        s->max_seq = r->seq;
    }
    int clock = s->kind == K_AUDIO ? 48000 : 90000;
    double transit = now * clock - r->ts;
    if (s->have_transit) {
        double d = transit - s->transit;
        if (d < 0) d = -d;
        if (d < clock * 60.0) s->jitter += (d - s->jitter) / 16;
    }
    s->transit = transit;
    s->have_transit = 1;
    if (!s->have_ts || r->ts != s->last_ts) s->ts_frames++;
    s->have_ts = 1;
    s->last_ts = r->ts;
    if (s->kind == K_AUDIO || r->marker) stream_frame(s, now);
}

static void rtcp_feedback(PeerObject *p, const uint8_t *d, int plen) {
    int fmt = d[0] & 0x1F;
    uint32_t video = p->senders[1].clip != NULL ? p->senders[1].ssrc : 0;
    if (plen < 12 || video == 0) return;
    if (fmt == 1 && rd32(d + 8) == video) { /* PLI */
        p->rc.pli++;
        p->senders[1].keyframe_wanted = 1;
    } else if (fmt == 4) { /* FIR: 8-byte entries naming the SSRC asked for */
        for (int off = 12; off + 8 <= plen; off += 8) {
            if (rd32(d + off) == video) {
                p->rc.fir++;
                p->senders[1].keyframe_wanted = 1;
            }
        }
    }
}

static int rtcp_reports(PeerObject *p, const uint8_t *d, int plen, int first) {
    int count = d[0] & 0x1F;
    if (first + 24 * count > plen) return -1;
    for (int i = 0; i < count; i++) {
        const uint8_t *b = d + first + 24 * i;
        uint32_t ssrc = rd32(b), lsr = rd32(b + 16), dlsr = rd32(b + 20);
        for (int k = 0; k < 2; k++) {
            if (p->senders[k].clip != NULL && p->senders[k].ssrc == ssrc && lsr != 0) {
                uint32_t rtt = ntp_middle_now() - lsr - dlsr;
                if (rtt < (10u << 16)) p->rtt = rtt / 65536.0; /* ignore nonsense over 10 s */
            }
        }
    }
    return 0;
}

/* A plaintext compound RTCP packet: keyframe requests and round-trip times for our senders.
 * Returns -1 at the first packet whose lengths do not add up (what came before it is used). */
static int peer_rtcp(PeerObject *p, const uint8_t *d, int n) {
    int off = 0;
    while (off + 4 <= n) {
        const uint8_t *c = d + off;
        int plen = 4 * (rd16(c + 2) + 1);
        if ((c[0] >> 6) != 2 || off + plen > n) return -1;
        int bad = 0;
        if (c[1] == 206) rtcp_feedback(p, c, plen);
        else if (c[1] == 201) bad = rtcp_reports(p, c, plen, 8);
        else if (c[1] == 200) bad = plen < 28 ? -1 : rtcp_reports(p, c, plen, 28);
        if (bad) return -1;
        off += plen;
    }
    return off == n ? 0 : -1; /* trailing bytes shorter than a header */
}

/* One datagram from the socket (or from Peer.feed). ``d`` has BUF_SIZE bytes of room. */
void peer_datagram(PeerObject *p, uint8_t *d, int n, const struct sockaddr_storage *from,
                   double now) {
    p->rc.datagrams++;
    if (n <= 0) {
        p->rc.truncated++;
        return;
    }
    if (d[0] < 4 || (d[0] > 19 && d[0] < 64)) { /* STUN, DTLS (RFC 7983): aioice and aiortc */
        p->rc.fallback++;
        call_fallback(p, d, n, from);
        return;
    }
    if (d[0] < 128 || d[0] > 191) {
        p->rc.garbage++;
        return;
    }
    if (n < 12) {
        p->rc.truncated++;
        return;
    }
    if (n > MAX_RTP + SRTP_ROOM || p->rx == NULL) {
        p->rc.malformed++;
        return;
    }
    int len = n;
    if (d[1] >= 192 && d[1] <= 223) {
        if (lp_unprotect_rtcp(p->rx, d, &len) != 0) {
            p->rc.srtp_failures++;
            return;
        }
        if (peer_rtcp(p, d, len) != 0) p->rc.malformed++;
        else p->rc.rtcp++;
        return;
    }
    if (lp_unprotect(p->rx, d, &len) != 0) {
        p->rc.srtp_failures++;
        return;
    }
    RtpInfo r;
    if (rtp_header(d, len, &r) != 0) {
        p->rc.malformed++;
        return;
    }
    Stream *s = stream_of(p, r.ssrc, r.pt);
    if (s == NULL) return;
    p->rc.rtp++;
    stream_add(s, &r, n, now);
}

/* Read every datagram waiting (up to DRAIN_MAX), RECV_BATCH per system call. */
void peer_drain(PeerObject *p) {
    struct mmsghdr msgs[RECV_BATCH];
    struct iovec iov[RECV_BATCH];
    struct sockaddr_storage from[RECV_BATCH];
    int budget = DRAIN_MAX;
    Py_INCREF(p); /* a fallback call may close the peer */
    while (budget > 0 && !p->closed && p->fd >= 0) {
        for (int i = 0; i < RECV_BATCH; i++) {
            iov[i].iov_base = rx_bufs[i];
            iov[i].iov_len = BUF_SIZE;
            memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
        }
        int got = recvmmsg(p->fd, msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EINTR) continue;
            break; /* EAGAIN: drained */
        }
        budget -= got;
        double now = mono_now();
        for (int m = 0; m < got && !p->closed; m++) {
            if (msgs[m].msg_hdr.msg_flags & MSG_TRUNC) {
                p->rc.datagrams++;
                p->rc.malformed++; /* larger than any datagram of ours */
                continue;
            }
            peer_datagram(p, rx_bufs[m], (int)msgs[m].msg_len, &from[m], now);
        }
        if (got < RECV_BATCH) break;
    }
    Py_DECREF(p);
}
