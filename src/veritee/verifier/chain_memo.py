"""Memos of verified certificate chains, shared by the verifiers.

A platform presents the same certificates at every attestation (an SNP chip its VCEK, a GPU its
device chain), so the signatures of its chain need checking once, not at every report.  The
rules every memo here follows:

- a key is built from the **content** of everything the verdict depends on: the SHA-256 of each
  certificate's DER (:func:`der_sha256`), of each CRL, and of the trust anchors it was checked
  against, so a chain under another root, or a CRL that changed, is a different key;
- an entry holds a :class:`Validity` window (the latest notBefore/thisUpdate to the earliest
  notAfter/nextUpdate of what was checked) and is served only for a verification time inside
  it; outside, the caller checks again and fails where the full check fails;
- only successes are stored: a failure is always checked in full;
- memos are bounded (least recently used first out) and safe to share between threads.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

__all__ = ["ChainMemo", "LruMemo", "Validity", "der_sha256"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@functools.lru_cache(maxsize=1024)
def der_sha256(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER.  Remembered per certificate (certificates compare and
    hash by their content), so a chain seen before is not re-encoded."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()


@dataclass(frozen=True)
class Validity:
    """A closed window of time: ``not_before <= at <= not_after``."""

    not_before: dt.datetime
    not_after: dt.datetime

    def __contains__(self, at: object) -> bool:
        return isinstance(at, dt.datetime) and self.not_before <= at <= self.not_after

    @classmethod
    def of(
        cls,
        certs: Iterable[x509.Certificate],
        crls: Iterable[x509.CertificateRevocationList] = (),
    ) -> Validity:
        """When every certificate is valid and every CRL current (a CRL without nextUpdate
        never expires); empty (``not_before > not_after``) when there is no such time."""
        starts = [c.not_valid_before_utc for c in certs]
        ends = [c.not_valid_after_utc for c in certs]
        for crl in crls:
            starts.append(crl.last_update_utc)
            if crl.next_update_utc is not None:
                ends.append(crl.next_update_utc)
        return cls(max(starts), min(ends))


class LruMemo(Generic[K, V]):
    """A bounded, thread-safe mapping that forgets its least recently used entry first."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class ChainMemo(Generic[K, V]):
    """Verdicts of verified chains, each served only inside its :class:`Validity`."""

    def __init__(self, max_size: int) -> None:
        self._memo: LruMemo[K, tuple[Validity, V]] = LruMemo(max_size)
        self._lock = threading.Lock()
        #: verdicts served (a key found outside its window is not one)
        self.hits = 0

    @property
    def max_size(self) -> int:
        return self._memo.max_size

    def get(self, key: K, at: dt.datetime) -> V | None:
        """The remembered verdict for ``key`` if ``at`` lies in its window, else None."""
        entry = self._memo.get(key)
        if entry is None or at not in entry[0]:
            return None
        with self._lock:
            self.hits += 1
        return entry[1]

    def put(self, key: K, value: V, validity: Validity) -> None:
        """Remember a verdict that held at some time inside ``validity``."""
        if validity.not_before <= validity.not_after:
            self._memo.put(key, (validity, value))

    def clear(self) -> None:
        self._memo.clear()
        with self._lock:
            self.hits = 0

    def __len__(self) -> int:
        return len(self._memo)
