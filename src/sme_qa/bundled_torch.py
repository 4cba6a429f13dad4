"""The bundled model's passage encoder in plain torch, for indexing.

What sentence-transformers runs for the directory ``bundled_st.materialize`` writes (a BERT
encoder, mean pooling over every token the prompt included, L2 normalisation), written out in
torch's functional ops so that a fresh ``sme-qa index`` imports neither sentence-transformers
nor transformers: their import alone is ~5 s on 2 cores against torch's ~1.5 s
(``python -X importtime``), the largest part of a small update's start-up.  The vectors agree
with sentence-transformers' to cosine ≥ 0.99999 in fp32, and in bf16 (``use_bf16``) with its
autocast's to ≥ 0.9999 (tests/test_embedding.py).  Any other model still goes through
sentence-transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError


class TorchEncoder:
    """The subset of ``SentenceTransformer`` that ``embedding.SentenceTransformerEmbedder`` uses
    (``encode``, ``tokenizer``, ``max_seq_length``, ``get_embedding_dimension``), for a BERT
    directory with mean pooling."""

    backend_name = "torch"

    def __init__(self, directory: Path) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        try:
            config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
            pooling = json.loads((directory / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
            limit = json.loads((directory / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"]
            shape = (config["model_type"], config.get("position_embedding_type", "absolute"), config["hidden_act"])
            if shape != ("bert", "absolute", "gelu") or not pooling.get("pooling_mode_mean_tokens"):
                raise ModelError(f"{directory}: not a BERT encoder with mean pooling ({shape})")
            self._weights = {k: v.float() for k, v in load_file(str(directory / "model.safetensors")).items()}
            tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        except (OSError, KeyError, ValueError) as e:
            raise ModelError(f"cannot load the bundled model from {directory}: {e}") from e
        self.max_seq_length = min(int(limit), int(config["max_position_embeddings"]))
        tokenizer.enable_truncation(self.max_seq_length)
        tokenizer.no_padding()
        self.tokenizer = _Tokenizer(tokenizer)
        self._pad = int(config.get("pad_token_id", 0))
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._eps = float(config["layer_norm_eps"])
        self._hidden = int(config["hidden_size"])
        self._torch = torch
        self._dtype = torch.float32  # of the linear layers' weights and inputs (use_bf16)

    def use_bf16(self) -> None:
        """Run the linear layers and attention in bf16, with weights cast once (what bf16
        autocast does, without casting every weight again at every call: autocast caches
        casts only for weights that require gradients); the residual stream, the layer
        norms and the pooling stay fp32.  Same vectors as autocast (cosine 0.99999 to fp32),
        39.5 → 47.2 passages/s on 2 cores with avx512_bf16 (one process, best of 3)."""
        torch = self._torch
        self._dtype = torch.bfloat16
        for name, value in self._weights.items():
            if name.startswith("encoder.") and "LayerNorm" not in name:
                self._weights[name] = value.to(torch.bfloat16)

    def get_embedding_dimension(self) -> int:
        return self._hidden

    def encode(self, texts: Sequence[str], prompt: str | None = None, batch_size: int = 32, **_: Any) -> np.ndarray:
        """L2-normalised vectors of ``prompt + text`` for each text, in order."""
        torch = self._torch
        ids = self.tokenizer.ids([(prompt or "") + t for t in texts])
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(ids), self._hidden), np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                width = max(len(ids[i]) for i in rows)
                batch = torch.full((len(rows), width), self._pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.bool)
                for j, i in enumerate(rows):
                    batch[j, : len(ids[i])] = torch.tensor(ids[i])
                    mask[j, : len(ids[i])] = True
                out[rows] = self._forward(batch, mask).float().numpy()
        return out

    def _forward(self, ids: Any, mask: Any) -> Any:
        torch = self._torch
        F = torch.nn.functional
        w, eps, h = self._weights, self._eps, (self._hidden,)

        def norm(x: Any, name: str) -> Any:
            return F.layer_norm(x, h, w[f"{name}.LayerNorm.weight"], w[f"{name}.LayerNorm.bias"], eps)

        def linear(x: Any, name: str) -> Any:
            return F.linear(x.to(self._dtype), w[f"{name}.weight"], w[f"{name}.bias"])

        b, n = ids.shape
        x = F.embedding(ids, w["embeddings.word_embeddings.weight"])
        x = x + w["embeddings.position_embeddings.weight"][:n] + w["embeddings.token_type_embeddings.weight"][0]
        x = norm(x, "embeddings")
        heads, width = self._heads, self._hidden // self._heads
        # no mask for a batch without padding: sdpa's unmasked kernel is ~6 % faster
        attend = None if bool(mask.all()) else mask[:, None, None, :]
        for i in range(self._layers):
            p = f"encoder.layer.{i}"

            def split(t: Any) -> Any:
                return t.view(b, n, heads, width).transpose(1, 2)

            q, k, v = (split(linear(x, f"{p}.attention.self.{m}")) for m in ("query", "key", "value"))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend).transpose(1, 2).reshape(b, n, self._hidden)
            x = norm(linear(a, f"{p}.attention.output.dense").float() + x, f"{p}.attention.output")
            f = F.gelu(linear(x, f"{p}.intermediate.dense"))
            x = norm(linear(f, f"{p}.output.dense").float() + x, f"{p}.output")
        m = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled.float(), dim=-1)


class _Tokenizer:
    """The call ``SentenceTransformerEmbedder.token_counts`` makes of a Hugging Face tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def __call__(self, texts: Sequence[str], **_: Any) -> dict[str, list[list[int]]]:
        return {"input_ids": self.ids(texts)}
