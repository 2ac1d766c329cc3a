/* RTCP from a peer (RFC 3550, 4585, 5104, draft-alvestrand-rmcat-remb), after SRTCP unprotect.
 *
 * One compound packet can speak of both directions of a participant's connection: sender
 * reports of the streams it publishes (routed to their Track, for lip sync and our receiver
 * reports) and feedback about the legs we send it (receiver reports, NACK, PLI/FIR, REMB). All
 * of it is handled here; only a keyframe request reaches Python (rate-limited there). Every
 * length is checked against the packet's own length field and the datagram. */
#include "dataplane.h"

#define RTCP_SR 200
#define RTCP_RR 201
#define RTCP_RTPFB 205
#define RTCP_PSFB 206
#define MAX_NACKED 64 /* packets resent per NACK message, as the Python path did */

static LegObject *leg_by_ssrc(TransportObject *t, uint32_t ssrc) {
    for (int i = 0; i < t->nlegs_out; i++)
        if (t->legs_out[i]->ssrc == ssrc && !t->legs_out[i]->closed) return t->legs_out[i];
    return NULL;
}

static TrackObject *track_by_ssrc(TransportObject *t, uint32_t ssrc) {
    for (int i = 0; i < t->nroutes; i++)
        if (t->route_ssrc[i] == ssrc) return t->route_track[i];
    return NULL;
}

static void report_blocks(TransportObject *t, const uint8_t *b, int count, const uint8_t *end) {
    double now = -1;
    for (int i = 0; i < count && b + 24 <= end; i++, b += 24) {
        LegObject *l = leg_by_ssrc(t, rd32(b));
        if (l == NULL) continue;
        l->fraction_lost = b[4];
        l->jitter = rd32(b + 12);
        uint32_t lsr = rd32(b + 16), dlsr = rd32(b + 20);
        if (lsr != 0 && lsr == l->sr_lsr) {
            if (now < 0) {
                uint32_t unused;
                realtime(&now, &unused);
            }
            double rtt = now - l->sr_sent_at - dlsr / 65536.0;
            if (rtt >= 0 && rtt < 60) l->rtt = rtt;
        }
    }
}

static void keyframe_request(TransportObject *t, LegObject *l) {
    if (l->on_keyframe == NULL) return;
    if (t->pump != NULL)
        pump_enqueue(t->pump, t, EV_LEG_KEYFRAME, l->ssrc, NULL, 0, NULL);
    else
        call_soon_safe(l->on_keyframe, NULL);
}

static void nack(TransportObject *t, const uint8_t *p, const uint8_t *end) {
    LegObject *l = leg_by_ssrc(t, rd32(p + 8));
    t->counters->nack_received++;
    if (l == NULL) return;
    int resent = 0;
    for (const uint8_t *f = p + 12; f + 4 <= end && resent < MAX_NACKED; f += 4) {
        uint16_t pid = rd16(f), blp = rd16(f + 2);
        leg_retransmit(l, pid);
        resent++;
        for (int bit = 0; bit < 16 && resent < MAX_NACKED; bit++) {
            if (blp & (1 << bit)) {
                leg_retransmit(l, (uint16_t)(pid + bit + 1));
                resent++;
            }
        }
    }
}

static void remb(TransportObject *t, const uint8_t *p, const uint8_t *end) {
    /* FCI: "REMB", number of SSRCs, 6-bit exponent and 18-bit mantissa, SSRCs */
    const uint8_t *f = p + 12;
    if (f + 8 > end || memcmp(f, "REMB", 4) != 0) return;
    int n = f[4];
    int exp = f[5] >> 2;
    unsigned long long mantissa = ((unsigned long long)(f[5] & 0x03) << 16) | rd16(f + 6);
    unsigned long long bitrate = mantissa << exp;
    t->counters->remb_received++;
    double now = monotonic_now();
    f += 8;
    for (int i = 0; i < n && f + 4 <= end; i++, f += 4) {
        LegObject *l = leg_by_ssrc(t, rd32(f));
        if (l != NULL) {
            l->remb_bps = bitrate;
            l->remb_at = now;
        }
    }
}

/* A compound that is not a chain of version-2 packets whose length words add up to exactly the
 * datagram is counted as malformed; the packets before the first bad header are still used. */
void transport_rtcp(TransportObject *t, const uint8_t *d, int n) {
    t->counters->rtcp_received++;
    int pos = 0;
    while (pos + 4 <= n && !t->closed) {
        const uint8_t *p = d + pos;
        if ((p[0] >> 6) != 2) break;
        int count = p[0] & 0x1F; /* report count, or the feedback message type */
        int pt = p[1];
        int len = (rd16(p + 2) + 1) * 4;
        if (pos + len > n) break;
        const uint8_t *end = p + len;
        if (pt == RTCP_SR && len >= 28) {
            TrackObject *track = track_by_ssrc(t, rd32(p + 4));
            if (track != NULL && track->media_ssrc == rd32(p + 4)) {
                uint32_t unused;
                track->sr_ntp = ((unsigned long long)rd32(p + 8) << 32) | rd32(p + 12);
                track->sr_rtp = rd32(p + 16);
                realtime(&track->sr_arrived, &unused);
                track->has_sr = 1;
            }
            report_blocks(t, p + 28, count, end);
        } else if (pt == RTCP_RR && len >= 8) {
            report_blocks(t, p + 8, count, end);
        } else if (pt == RTCP_RTPFB && count == 1 && len >= 12) {
            nack(t, p, end);
        } else if (pt == RTCP_PSFB && len >= 12) {
            if (count == 1) { /* PLI */
                LegObject *l = leg_by_ssrc(t, rd32(p + 8));
                t->counters->pli_received++;
                if (l != NULL) keyframe_request(t, l);
            } else if (count == 4) { /* FIR: the target SSRC is in each FCI entry */
                t->counters->fir_received++;
                for (const uint8_t *f = p + 12; f + 8 <= end; f += 8) {
                    LegObject *l = leg_by_ssrc(t, rd32(f));
                    if (l != NULL) keyframe_request(t, l);
                }
            } else if (count == 15) {
                remb(t, p, end);
            }
        }
        pos += len;
    }
    if (!t->closed && (n < 4 || pos != n)) t->counters->malformed++;
}
