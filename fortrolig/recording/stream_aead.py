"""Streaming AES-256-GCM at rest, in Tink's ``AES256_GCM_HKDF_4KB`` format, with ``cryptography``.

A recording is encrypted as it is written, so nothing unencrypted ever reaches the disk. The
format is Tink's streaming AEAD (``AesGcmHkdfStreaming``, key size 32, HKDF-SHA256, 4096-byte
ciphertext segments), so files can be checked against Tink itself (tests do) and any Tink
implementation can read them:

    header   = header_length (1 byte, = 40) ‖ salt (32 bytes) ‖ nonce_prefix (7 bytes)
    file key = HKDF-SHA256(ikm = key, salt = salt, info = associated data, 32 bytes)
    segment i: AES-256-GCM(file key, nonce = nonce_prefix ‖ uint32_be(i) ‖ last (1 byte),
               no GCM associated data); every segment is 4096 bytes of ciphertext (4080 of
               plaintext + 16 of tag) except the first, which is shorter by the header, and
               the last, which may be shorter (and is never empty unless the file is).

Each segment authenticates its index and whether it is the last one, so a reordered,
truncated or extended file fails, and any segment can be decrypted alone: that gives the
random access an HTTP range request needs (:class:`SegmentReader`).

The WebM muxer seeks back at the end to write the segment size, duration and seek head, which
all lie in the first few hundred bytes. Re-encrypting a written segment would reuse its nonce,
so :class:`EncryptingWriter` keeps the *first* segment's plaintext in memory (never on disk)
until close and writes it last; every later segment is written as soon as it is full. The
price: a process that dies mid-recording leaves a file without its first segment, which no
reader accepts (documented in docs/security.md).
"""

from __future__ import annotations

import io
import os
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from typing_extensions import Buffer

from fortrolig.core.aead import KEY_BYTES, IntegrityError

SEGMENT_BYTES = 4096
"""Ciphertext segment size (Tink's "4KB")."""
TAG_BYTES = 16
SALT_BYTES = KEY_BYTES  # Tink uses a salt as long as the derived key
NONCE_PREFIX_BYTES = 7
HEADER_BYTES = 1 + SALT_BYTES + NONCE_PREFIX_BYTES
PLAIN_SEGMENT = SEGMENT_BYTES - TAG_BYTES
FIRST_PLAIN_SEGMENT = PLAIN_SEGMENT - HEADER_BYTES


class StreamIntegrityError(IntegrityError):
    """An encrypted stream failed authentication: changed, truncated, reordered or wrong key."""

    code = "stream_integrity_error"


def _file_key(key: bytes, salt: bytes, associated_data: bytes) -> AESGCM:
    if len(key) != KEY_BYTES:
        raise ValueError("a streaming key is 32 bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=associated_data)
    return AESGCM(hkdf.derive(key))


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _plain_start(index: int) -> int:
    """Plaintext offset where segment ``index`` begins."""
    return 0 if index == 0 else FIRST_PLAIN_SEGMENT + (index - 1) * PLAIN_SEGMENT


def _cipher_start(index: int) -> int:
    """File offset where segment ``index`` begins."""
    return HEADER_BYTES if index == 0 else index * SEGMENT_BYTES


def _segment_of(offset: int) -> int:
    if offset < FIRST_PLAIN_SEGMENT:
        return 0
    return 1 + (offset - FIRST_PLAIN_SEGMENT) // PLAIN_SEGMENT


def _capacity(index: int) -> int:
    return FIRST_PLAIN_SEGMENT if index == 0 else PLAIN_SEGMENT


class EncryptingWriter(io.RawIOBase):
    """A seekable, writable file object that encrypts everything written to ``raw``.

    Writes append, except that the first segment's plaintext (held in memory until
    :meth:`close`) may be rewritten in place: what a muxer's final header fix-up needs. A seek
    back past the first segment raises :class:`io.UnsupportedOperation`, because written
    ciphertext can never be changed safely. ``raw`` must be a seekable binary file opened for
    writing; it is not closed here.
    """

    def __init__(self, raw: BinaryIO, key: bytes, associated_data: bytes) -> None:
        super().__init__()
        salt = os.urandom(SALT_BYTES)
        self._prefix = os.urandom(NONCE_PREFIX_BYTES)
        self._aead = _file_key(key, salt, associated_data)
        self._raw = raw
        self._header = bytes([HEADER_BYTES]) + salt + self._prefix
        self._first = bytearray()  # plaintext of segment 0, written at close
        self._current = bytearray()  # plaintext of the segment being filled (index >= 1)
        self._index = 0  # segment the end of the stream is in
        self._size = 0  # plaintext bytes so far
        self._pos = 0
        self._finished = False

    # -- io.RawIOBase ------------------------------------------------------------------------

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the write position (within the first segment, or to the end)."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        target = base + offset
        if target < 0 or target > self._size:
            raise io.UnsupportedOperation("seek outside the written stream")
        self._pos = target
        return target

    def write(self, data: Buffer) -> int:
        """Write at the current position; only appends or first-segment rewrites are allowed."""
        if self.closed or self._finished:
            raise ValueError("write to a closed encrypted stream")
        chunk = memoryview(data).cast("B")
        n = len(chunk)
        if self._pos < self._size:
            self._rewrite_head(chunk)
        else:
            self._append(chunk)
        return n

    def close(self) -> None:
        """Write the last segment and the first one (with the header); idempotent."""
        if not self.closed and not self._finished:
            self._finished = True
            self._finish()
        super().close()

    # -- internals ---------------------------------------------------------------------------

    def _rewrite_head(self, chunk: memoryview) -> None:
        end = self._pos + len(chunk)
        if end > FIRST_PLAIN_SEGMENT or end > self._size:
            # Nothing the WebM muxer does; refuse rather than re-encrypt under a used nonce.
            raise io.UnsupportedOperation("rewrite beyond the first segment")
        self._first[self._pos : end] = chunk
        self._pos = end

    def _append(self, chunk: memoryview) -> None:
        while len(chunk):
            if self._index == 0:
                room = FIRST_PLAIN_SEGMENT - len(self._first)
                if room == 0:
                    self._index = 1
                    continue
                take = chunk[:room]
                self._first += take
            else:
                if len(self._current) == PLAIN_SEGMENT:
                    # Full and more data follows, so it is not the last segment.
                    self._emit(self._index, bytes(self._current), last=False)
                    self._current.clear()
                    self._index += 1
                take = chunk[: PLAIN_SEGMENT - len(self._current)]
                self._current += take
            chunk = chunk[len(take) :]
            self._size += len(take)
            self._pos = self._size

    def _emit(self, index: int, plaintext: bytes, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, index, last), plaintext, None)
        self._raw.seek(_cipher_start(index))
        self._raw.write(sealed)

    def _finish(self) -> None:
        if self._index >= 1:
            self._emit(self._index, bytes(self._current), last=True)
        self._emit(0, bytes(self._first), last=self._index == 0)
        self._raw.seek(0)
        self._raw.write(self._header)
        self._raw.flush()
        self._first[:] = b"\0" * len(self._first)  # do not leave plaintext around longer
        self._current[:] = b"\0" * len(self._current)


def encrypt(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """One-shot encryption (tests, small files): same format as :class:`EncryptingWriter`."""
    out = io.BytesIO()
    with EncryptingWriter(out, key, associated_data) as writer:
        writer.write(plaintext)
    return out.getvalue()


class SegmentReader:
    """Random access to the plaintext of an encrypted stream; every byte read is authenticated.

    ``raw`` is a seekable binary file; :attr:`size` is the plaintext length. Any failure
    (tampering, truncation, wrong key or associated data) raises :class:`StreamIntegrityError`.
    """

    def __init__(self, raw: BinaryIO, key: bytes, associated_data: bytes) -> None:
        self._raw = raw
        raw.seek(0, io.SEEK_END)
        total = raw.tell()
        raw.seek(0)
        header = raw.read(HEADER_BYTES)
        if total < HEADER_BYTES + TAG_BYTES or len(header) != HEADER_BYTES:
            raise StreamIntegrityError("encrypted stream is truncated")
        if header[0] != HEADER_BYTES:
            raise StreamIntegrityError("encrypted stream has a bad header")
        self._aead = _file_key(key, header[1 : 1 + SALT_BYTES], associated_data)
        self._prefix = header[1 + SALT_BYTES :]
        self.size = plaintext_size(total)
        self.segments = -(-total // SEGMENT_BYTES)
        self._total = total

    def segment(self, index: int) -> bytes:
        """The authenticated plaintext of one segment."""
        if not 0 <= index < self.segments:
            raise IndexError("segment out of range")
        start = _cipher_start(index)
        end = min(self._total, (index + 1) * SEGMENT_BYTES)
        self._raw.seek(start)
        sealed = self._raw.read(end - start)
        last = index == self.segments - 1
        try:
            return self._aead.decrypt(_nonce(self._prefix, index, last), sealed, None)
        except InvalidTag:
            raise StreamIntegrityError(f"segment {index} failed authentication") from None

    def read_range(self, offset: int, length: int) -> bytes:
        """Plaintext bytes ``[offset, offset + length)`` (clipped at the end), decrypting only
        the segments they lie in."""
        if offset < 0 or length < 0:
            raise ValueError("negative range")
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        out = bytearray()
        for index in range(_segment_of(offset), _segment_of(end - 1) + 1):
            plain = self.segment(index)
            base = _plain_start(index)
            out += plain[max(0, offset - base) : end - base]
        return bytes(out)

    def read_all(self) -> bytes:
        """The whole plaintext (every segment checked, in order)."""
        return b"".join(self.segment(i) for i in range(self.segments))


def plaintext_size(total: int) -> int:
    """The plaintext length of a well-formed stream of ``total`` ciphertext bytes (what
    :attr:`SegmentReader.size` will say; a stream too short for that raises)."""
    full, rest = divmod(total, SEGMENT_BYTES)
    segments = full + (1 if rest else 0)
    last_len = (rest or SEGMENT_BYTES) - (HEADER_BYTES if segments == 1 else 0)
    if total < HEADER_BYTES + TAG_BYTES or last_len < TAG_BYTES:
        raise StreamIntegrityError("encrypted stream is truncated")
    return _plain_start(segments - 1) + last_len - TAG_BYTES


def ciphertext_span(offset: int, end: int, total: int) -> tuple[int, int]:
    """The ciphertext bytes ``[start, stop)`` that hold plaintext ``[offset, end)`` of a stream
    of ``total`` bytes: whole segments, the header excluded (a reader needs it as well)."""
    if not 0 <= offset < end:
        raise ValueError("empty or negative range")
    first, last = _segment_of(offset), _segment_of(end - 1)
    return _cipher_start(first), min(total, (last + 1) * SEGMENT_BYTES)


def decrypt(key: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    """One-shot decryption of :func:`encrypt`'s (or Tink's) output."""
    return SegmentReader(io.BytesIO(ciphertext), key, associated_data).read_all()
