/* RTP parsing and payload inspection; every length is checked before it is read. */
#include "dataplane.h"

/* ------------------------------------------------------------------------------------------
 * Payload inspection: where keyframes start (VP8: RFC 7741, H.264: RFC 6184).
 * ---------------------------------------------------------------------------------------- */

int vp8_keyframe_start(const uint8_t *p, Py_ssize_t n) {
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

int h264_keyframe_start(const uint8_t *p, Py_ssize_t n) {
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


/* ------------------------------------------------------------------------------------------
 * RTP header parsing.
 * ---------------------------------------------------------------------------------------- */


/* Parse a plaintext RTP packet; 0 on success, -1 if malformed. */
int rtp_parse(uint8_t *d, int n, int audio_level_id, Rtp *r) {
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

void realtime(double *unix_s, uint32_t *abs_send_time) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    *unix_s = (double)t.tv_sec + t.tv_nsec / 1e9;
    /* abs-send-time: 6.18 fixed-point seconds of the NTP time, 24 bits */
    uint64_t secs = (uint64_t)t.tv_sec + NTP_EPOCH_OFFSET;
    uint64_t frac = ((uint64_t)t.tv_nsec << 18) / 1000000000ULL;
    *abs_send_time = (uint32_t)(((secs << 18) | frac) & 0xFFFFFF);
}


/* Seconds on the clock Python's time.monotonic() reads (CLOCK_MONOTONIC on Linux). */
double monotonic_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}
