"""sentence-transformers objects as rankers, with gradients: a `CrossEncoder` becomes the
crossencoder ranker on its own Hugging Face model and tokenizer, a `SentenceTransformer` the
biencoder on its transformer module with its own pooling and similarity.

The crossencoder's score is the model's logit; `CrossEncoder.predict` applies the object's
activation (a sigmoid for one label) on top, a monotone map, so the ranking is the same.
"""
from __future__ import annotations

from .base import Ranker
from .errors import BadInput


def is_sentence_transformers(obj) -> bool:
    return type(obj).__module__.startswith("sentence_transformers")


def from_sentence_transformers(obj, **params) -> Ranker:
    """A `Ranker` reading `obj`'s own modules (no copy of the weights); params as in a ranker table."""
    from .biencoder import BiEncoder
    from .crossencoder import CrossEncoder
    kind = type(obj).__name__
    if kind == "CrossEncoder":
        tok, model = getattr(obj, "tokenizer", None), getattr(obj, "model", None)
        if tok is None or model is None:
            raise BadInput("sentence-transformers CrossEncoder without .model/.tokenizer: not supported")
        params.setdefault("max_length", int(getattr(obj, "max_length", None) or 512))
        return CrossEncoder(model=_name(model), tokenizer=tok, hf_model=model, **params).eval()
    if kind == "SentenceTransformer":
        mods = list(obj)
        first = mods[0] if mods else None
        hf = getattr(first, "auto_model", None)
        tok = getattr(first, "tokenizer", None) or getattr(obj, "tokenizer", None)
        if hf is None or tok is None:
            raise BadInput("sentence-transformers SentenceTransformer: its first module is not a Transformer "
                           "with a Hugging Face model and tokenizer; not supported")
        pooling, normalised = None, False
        for m in mods[1:]:
            name = type(m).__name__
            if name == "Pooling":
                cfg = m.get_config_dict()
                mode = cfg.get("pooling_mode") or next(
                    (k[len("pooling_mode_"):].replace("_tokens", "").replace("_token", "")
                     for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True), None)
                if mode not in ("mean", "cls"):
                    raise BadInput(f"sentence-transformers pooling {mode!r} is not supported (mean or cls)")
                pooling = mode
            elif name == "Normalize":
                normalised = True
            else:
                raise BadInput(f"sentence-transformers module {name} is not supported (Transformer, Pooling, "
                               "Normalize only)")
        sim = getattr(obj, "similarity_fn_name", None) or "cosine"
        if sim not in ("cosine", "dot"):
            raise BadInput(f"sentence-transformers similarity {sim!r} is not supported (cosine or dot)")
        similarity = "cosine" if normalised or sim == "cosine" else "dot"
        params.setdefault("max_length", int(getattr(first, "max_seq_length", None) or 256))
        return BiEncoder(model=_name(hf), tokenizer=tok, hf_model=hf, pooling=pooling or "mean",
                         similarity=similarity, **params).eval()
    raise BadInput(f"sentence-transformers {kind} objects are not supported (CrossEncoder or SentenceTransformer)")


def _name(model) -> str:
    return str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
