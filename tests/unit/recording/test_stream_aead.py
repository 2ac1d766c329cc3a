"""The streaming AEAD against Tink itself, random access, and every kind of tampering."""

from __future__ import annotations

import io
import os

import pytest

from fortrolig.recording import stream_aead as s
from fortrolig.recording.stream_aead import EncryptingWriter, SegmentReader, StreamIntegrityError

KEY = bytes(range(32))
AD = b"fortrolig-recording/1 test"
SIZES = [0, 1, 4039, 4040, 4041, 4080 + 4040, 4080 + 4041, 50_000]


class _Kept(io.BytesIO):
    """Tink closes the stream it writes to; keep what was written."""

    value = b""

    def close(self) -> None:
        self.value = self.getvalue()
        super().close()


def _tink() -> object:
    pytest.importorskip("tink")
    from tink import cleartext_keyset_handle, streaming_aead
    from tink.proto import aes_gcm_hkdf_streaming_pb2 as pb
    from tink.proto import common_pb2, tink_pb2

    streaming_aead.register()
    params = pb.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=4096, derived_key_size=32, hkdf_hash_type=common_pb2.SHA256
    )
    key = pb.AesGcmHkdfStreamingKey(version=0, key_value=KEY, params=params)
    data = tink_pb2.KeyData(
        type_url="type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey",
        value=key.SerializeToString(),
        key_material_type=tink_pb2.KeyData.SYMMETRIC,
    )
    entry = tink_pb2.Keyset.Key(
        key_data=data, status=tink_pb2.ENABLED, key_id=1, output_prefix_type=tink_pb2.RAW
    )
    handle = cleartext_keyset_handle.from_keyset(tink_pb2.Keyset(primary_key_id=1, key=[entry]))
    return handle.primitive(streaming_aead.StreamingAead)


@pytest.mark.parametrize("size", SIZES)
def test_tink_reads_ours_and_we_read_tinks(size: int) -> None:
    tink: object = _tink()
    plain = os.urandom(size)
    out = _Kept()
    with tink.new_encrypting_stream(out, AD) as w:  # type: ignore[attr-defined]
        w.write(plain)
    assert s.decrypt(KEY, out.value, AD) == plain
    ours = s.encrypt(KEY, plain, AD)
    assert len(ours) == len(out.value)  # same segmenting, same overhead
    with tink.new_decrypting_stream(io.BytesIO(ours), AD) as r:  # type: ignore[attr-defined]
        assert r.read() == plain


def test_random_access_reads_any_range() -> None:
    plain = os.urandom(30_000)
    reader = SegmentReader(io.BytesIO(s.encrypt(KEY, plain, AD)), KEY, AD)
    assert reader.size == len(plain)
    for offset, length in [(0, 10), (4030, 20), (4040, 4080), (8119, 2), (29_990, 100), (0, 0)]:
        assert reader.read_range(offset, length) == plain[offset : offset + length]
    assert reader.read_range(40_000, 5) == b""


def test_the_first_segment_may_be_rewritten_in_place_and_nothing_else() -> None:
    out = io.BytesIO()
    writer = EncryptingWriter(out, KEY, AD)
    writer.write(b"a" * 10_000)
    writer.seek(100)
    writer.write(b"HEADER")
    with pytest.raises(io.UnsupportedOperation):
        writer.seek(5000)
        writer.write(b"x")
    writer.seek(0, io.SEEK_END)
    writer.write(b"end")
    writer.close()
    expected = b"a" * 100 + b"HEADER" + b"a" * 9894 + b"end"
    assert s.decrypt(KEY, out.getvalue(), AD) == expected


def test_any_flipped_byte_truncation_or_wrong_context_is_refused() -> None:
    good = s.encrypt(KEY, os.urandom(9000), AD)
    for position in range(0, len(good), 97):
        bad = bytearray(good)
        bad[position] ^= 0x80
        with pytest.raises(StreamIntegrityError):
            s.decrypt(KEY, bytes(bad), AD)
    for cut in (len(good) - 1, 8192, 4096, 50):
        with pytest.raises(StreamIntegrityError):
            s.decrypt(KEY, good[:cut], AD)
    with pytest.raises(StreamIntegrityError):
        s.decrypt(KEY, good, b"another recording")
    with pytest.raises(StreamIntegrityError):
        s.decrypt(bytes(32), good, AD)
    assert s.decrypt(KEY, good, AD)  # the original still reads
