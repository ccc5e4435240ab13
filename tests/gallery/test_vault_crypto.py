"""The vault's format and key handling (gallery.vault.crypto): known answers, and every kind
of damage an error, never garbage."""

from __future__ import annotations

import hashlib
import struct
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gallery.vault import crypto

KEY = bytes(range(32))
PREFIX = bytes.fromhex("0102030405060708")
MEDIA = uuid.UUID("12345678-1234-5678-1234-567812345678")
FILE_ID = crypto.blob_file_id(MEDIA, "0")


def test_known_answer_of_the_blob_format():
    data = bytes(i % 251 for i in range(40))
    blob = crypto.encrypt_bytes(KEY, FILE_ID, data, chunk_size=16, prefix=PREFIX)
    # The layout built by hand from the spec (docs/vault.md) with nothing but AES-GCM.
    expected = struct.pack(">8sIQ8sI", b"CHMKVLT1", 16, 40, PREFIX, 0)
    for index, (first, final) in enumerate([(0, False), (16, False), (32, True)]):
        nonce = PREFIX + struct.pack(">I", index)
        aad = FILE_ID + struct.pack(">I", index) + (b"\x01" if final else b"\x00")
        expected += AESGCM(KEY).encrypt(nonce, data[first:first + 16], aad)
    assert blob == expected
    assert len(blob) == crypto.ciphertext_size(40, 16) == 32 + 40 + 3 * 16
    # And the bytes themselves, pinned: a change of the format is a change of this test.
    assert FILE_ID.hex() == hashlib.sha256(b"chipmunk vault blob\0" + MEDIA.bytes + b"0").hexdigest()[:32]
    assert hashlib.sha256(blob).hexdigest() == KNOWN_BLOB_SHA256
    assert crypto.decrypt_bytes(KEY, FILE_ID, blob) == data


KNOWN_BLOB_SHA256 = "3ef1039582cfb96a10072a65d4c619b0253b5b8c7fd4bc89504b61f4913aa48f"


def test_known_answer_of_argon2id_and_the_wrapping():
    # Argon2id RFC 9106 parameters are not what we use; this pins our call: m, t, p, type ID.
    kek = crypto.passphrase_kek("correct horse battery", b"saltsaltsaltsalt", memory_kib=1024, time_cost=3,
                                parallelism=1)
    assert kek.hex() == KNOWN_KEK
    wrapped = crypto.wrap(KEY, kek, b"aad")
    assert crypto.unwrap(wrapped, kek, b"aad") == KEY
    with pytest.raises(crypto.VaultCryptoError):
        crypto.unwrap(wrapped, kek, b"other aad")
    other = crypto.passphrase_kek("correct horse batterz", b"saltsaltsaltsalt", memory_kib=1024, time_cost=3,
                                  parallelism=1)
    with pytest.raises(crypto.VaultCryptoError):
        crypto.unwrap(wrapped, other, b"aad")


KNOWN_KEK = "857b752182714e58301cea903913746bd899ead57b33d4eadd75301e8c0f3a8f"


def test_empty_and_exact_multiple_sizes_round_trip():
    for size in (0, 1, 15, 16, 17, 32, 33):
        data = bytes(size)
        blob = crypto.encrypt_bytes(KEY, FILE_ID, data, chunk_size=16)
        assert len(blob) == crypto.ciphertext_size(size, 16)
        assert crypto.decrypt_bytes(KEY, FILE_ID, blob) == data


def _blob(size=40, chunk=16) -> bytes:
    return crypto.encrypt_bytes(KEY, FILE_ID, bytes(range(size)), chunk_size=chunk, prefix=PREFIX)


@pytest.mark.parametrize("position", [0, 9, 20, 31, 32, 40, 47, 48, 70, -1])
def test_a_flipped_byte_anywhere_is_an_error(position):
    blob = bytearray(_blob())
    blob[position] ^= 0x01
    with pytest.raises(crypto.VaultCryptoError):
        crypto.decrypt_bytes(KEY, FILE_ID, bytes(blob))


def test_truncated_and_extended_blobs_are_errors():
    blob = _blob()
    chunk = 16 + 16
    for cut in (len(blob) - 1, len(blob) - chunk + 8, 32 + 2 * chunk, 32 + chunk, 31):
        with pytest.raises(crypto.VaultCryptoError):
            crypto.decrypt_bytes(KEY, FILE_ID, blob[:cut])
    # Dropping the final chunk and claiming a shorter size: the last remaining chunk is not final.
    header = crypto.header_parse(blob)
    forged = crypto.Header(chunk_size=16, size=32, prefix=header.prefix).pack() + blob[32:32 + 2 * chunk]
    with pytest.raises(crypto.VaultCryptoError):
        crypto.decrypt_bytes(KEY, FILE_ID, forged)
    with pytest.raises(crypto.VaultCryptoError):
        crypto.decrypt_bytes(KEY, FILE_ID, blob + b"\0")


def test_swapped_chunks_and_chunks_from_another_file_are_errors():
    blob = _blob(48)
    chunk = 32
    chunks = [blob[32 + i * chunk:32 + (i + 1) * chunk] for i in range(3)]
    swapped = blob[:32] + chunks[1] + chunks[0] + chunks[2]
    with pytest.raises(crypto.VaultCryptoError):
        crypto.decrypt_bytes(KEY, FILE_ID, swapped)
    # The same key and nonce prefix, another file id (another media or level): nothing opens.
    other = crypto.encrypt_bytes(KEY, crypto.blob_file_id(MEDIA, "1"), bytes(range(48)), chunk_size=16,
                                 prefix=PREFIX)
    mixed = blob[:32] + other[32:32 + chunk] + blob[32 + chunk:]
    with pytest.raises(crypto.VaultCryptoError):
        crypto.decrypt_bytes(KEY, FILE_ID, mixed)
    with pytest.raises(crypto.VaultCryptoError):
        crypto.decrypt_bytes(KEY, crypto.blob_file_id(MEDIA, "1"), blob)
    with pytest.raises(crypto.VaultCryptoError):
        crypto.decrypt_bytes(bytes(32), FILE_ID, blob)


def test_a_range_decrypts_only_the_chunks_it_touches():
    data = bytes(i % 256 for i in range(100))
    blob = crypto.encrypt_bytes(KEY, FILE_ID, data, chunk_size=16, prefix=PREFIX)
    header = crypto.header_parse(blob)
    for first, last in [(0, 0), (5, 40), (16, 31), (95, 99), (0, 99), (47, 48)]:
        start = header.chunk_span(first // 16)[0]
        end_first, end_len = header.chunk_span(last // 16)
        sealed = blob[start:end_first + end_len]
        # Damage outside the touched chunks does not matter: they are never read.
        pieces = [sealed[i:i + 7] for i in range(0, len(sealed), 7)]
        assert b"".join(crypto.decrypt_span(KEY, FILE_ID, header, first, last, pieces)) == data[first:last + 1]
    with pytest.raises(crypto.VaultCryptoError):
        list(crypto.decrypt_span(KEY, FILE_ID, header, 0, 40, [blob[32:60]]))


def test_recovery_keys_parse_as_typed():
    raw, shown = crypto.recovery_key_new()
    assert crypto.recovery_key_parse(shown) == raw
    assert crypto.recovery_key_parse(shown.lower().replace("-", " ")) == raw
    assert crypto.recovery_key_parse(shown[:-1]) is None
    assert crypto.recovery_key_parse("not a key") is None


def test_ctr_transform_is_seekable():
    data = bytes(range(256)) * 3
    whole = crypto.ctr_at(KEY, 0).update(data)
    for offset in (1, 15, 16, 17, 300):
        assert crypto.ctr_at(KEY, offset).update(data[offset:]) == whole[offset:]
    assert crypto.ctr_at(KEY, 0).update(whole) == data
