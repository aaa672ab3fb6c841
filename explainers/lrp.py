"""AttnLRP (Achtibat et al., ICML 2024): layer-wise relevance propagation for transformers, written natively.

Neither `lxt` nor `zennit` installs here with the pinned torch without pulling further builds (lxt requires
bitsandbytes, open_clip_torch and zennit, and zennit requires torchvision, which pins its own torch), so the rules
are written here, in the Gradient x Input form the paper derives (and lxt's "efficient" implementation uses):
relevance at a tensor x is x * g, where g is the backward signal of the modified gradient. Under
`AttnLRPMode` (a `TorchFunctionMode`, so it applies to every HF family without patching its code) the forward
is unchanged and the backward follows AttnLRP's rules:

- linear maps (Linear, embeddings' sums, mean pooling): the plain gradient (the epsilon-rule as epsilon -> 0;
  biases absorb their share);
- element-wise non-linearities (GELU, SiLU, tanh, ReLU, sigmoid): the identity rule, R_in = R_out
  (g_in = g_out * f(x) / x);
- normalisation (LayerNorm, RMSNorm's rsqrt, F.normalize, cosine similarity): the identity rule, the
  normaliser treated as a constant (detached), so relevance passes through the centring and scaling;
- a product of two input-dependent tensors (attention's Q K^T and A V, a gated MLP's act(gate) * up, a
  bi-encoder's query . document): the uniform rule, half the relevance to each factor (g / 2 to both);
- softmax: its own gradient, which in Gradient x Input is AttnLRP's softmax rule R_in = x (R_out - s sum R_out)
  (the share it does not pass on is the bias term the rule leaves out);
- scaled_dot_product_attention: computed explicitly (Q K^T, softmax, A V) so the two rules above apply;
- a maximum (late interaction's MaxSim): its gradient, all relevance to the maximal element (winner takes all).

"Input-dependent" is read from `requires_grad`: the explainer freezes the model's parameters while it runs.
Activations outside the list (e.g. "gelu_new"'s tanh formula) follow their parts' rules, an approximation."""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .aggregate import pieces_to_words
from .base import Explainer, Pair, register_explainer

#: element-wise non-linearities that get the identity rule
ACTIVATIONS = {F.gelu, F.silu, F.relu, F.mish, torch.tanh, torch.Tensor.tanh, torch.sigmoid, torch.Tensor.sigmoid,
               F.tanh, F.sigmoid, torch.relu, torch.Tensor.relu}
#: products that get the uniform rule when both factors depend on the input
PRODUCTS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__, torch.bmm,
            torch.Tensor.bmm, torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__, torch.einsum}


class _Identity(torch.autograd.Function):
    """y = f(x); backward g * f(x) / x: relevance x * g_in equals y * g_out (the identity rule)."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(y / torch.where(x == 0, torch.full_like(x, 1e-12), x))
        return y.clone()

    @staticmethod
    def backward(ctx, g):
        (ratio,) = ctx.saved_tensors
        return g * ratio, None


class _Halve(torch.autograd.Function):
    """Identity forward; half the backward signal (the uniform rule's share for each factor of a product)."""

    @staticmethod
    def forward(ctx, y):
        return y.clone()

    @staticmethod
    def backward(ctx, g):
        return g / 2


class _AuditedSoftmax(torch.autograd.Function):
    """softmax with its own gradient, recording the relevance it receives (sum s * g_out) and passes on
    (sum x * g_in) for the conservation check."""

    @staticmethod
    def forward(ctx, x, dim, record):
        s = torch.softmax(x, dim)
        ctx.save_for_backward(x, s)
        ctx.dim, ctx.record = dim, record
        return s

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        gin = s * (g - (g * s).sum(ctx.dim, keepdim=True))
        ctx.record.append((float((s * g).sum()), float(torch.nan_to_num(x * gin, 0.0, 0.0, 0.0).sum())))
        return gin, None, None


def _grad(t) -> bool:
    return isinstance(t, torch.Tensor) and t.requires_grad


class AttnLRPMode(TorchFunctionMode):
    """AttnLRP's rules as the backward of the ops run inside it (module docstring). `softmax_record`, when a
    list, receives (relevance in, relevance passed on) per softmax call after the backward pass."""

    def __init__(self, softmax_record: list | None = None):
        super().__init__()
        self.record = softmax_record

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in ACTIVATIONS and _grad(args[0]) and len(args) + len(kwargs) <= 2:
            x = args[0]
            return _Identity.apply(x, func(x.detach(), *args[1:], **kwargs))
        if func in PRODUCTS:
            ops = args[1:] if func is torch.einsum else args
            if func is torch.einsum and len(ops) == 1 and isinstance(ops[0], (list, tuple)):
                ops = ops[0]
            out = func(*args, **kwargs)
            return _Halve.apply(out) if sum(_grad(t) for t in ops) >= 2 else out
        if func is F.layer_norm:
            return _layer_norm(*args, **kwargs)
        if func in (torch.rsqrt, torch.Tensor.rsqrt):          # RMSNorm's normaliser
            return func(*args, **kwargs).detach()
        if func is F.rms_norm:
            return _rms_norm(*args, **kwargs)
        if func is F.normalize:
            return _normalize(*args, **kwargs)
        if func is F.cosine_similarity:
            a, b = args[0], args[1]
            dim = kwargs.get("dim", args[2] if len(args) > 2 else 1)
            return self(lambda: (_normalize(a, dim=dim) * _normalize(b, dim=dim)).sum(dim))
        if func is F.scaled_dot_product_attention:
            return self(lambda: _sdpa(*args, **kwargs))
        if func in (F.softmax, torch.softmax, torch.Tensor.softmax) and self.record is not None and _grad(args[0]):
            dim = kwargs.get("dim", args[1] if len(args) > 1 else -1)
            out = _AuditedSoftmax.apply(args[0].float(), dim, self.record)
            return out.to(kwargs["dtype"]) if kwargs.get("dtype") is not None else out.to(args[0].dtype)
        return func(*args, **kwargs)

    def __call__(self, fn):
        """Run `fn` with this mode active again (inside __torch_function__ the mode is off)."""
        with self:
            return fn()


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = tuple(range(-len(normalized_shape), 0))
    mean = x.mean(dims, keepdim=True)
    std = (x.var(dims, keepdim=True, unbiased=False) + eps).sqrt().detach()
    y = (x - mean) / std
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def _rms_norm(x, normalized_shape, weight=None, eps=None):
    dims = tuple(range(-len(normalized_shape), 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    y = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps).detach()
    return y * weight if weight is not None else y


def _normalize(x, p=2.0, dim=1, eps=1e-12, out=None):
    return x / x.norm(p, dim, keepdim=True).clamp(min=eps).detach()


def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], -3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], -3)
    s = torch.matmul(q, k.transpose(-2, -1)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if is_causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    if attn_mask is not None:
        s = s.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else s + attn_mask
    return torch.matmul(torch.softmax(s, -1), v)


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Parameters not requiring grad within the block (so `requires_grad` marks what depends on the input)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def attnlrp_relevance(model_call, softmax_record: list | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(score, relevance of each input, summed over its last dimension): `model_call()` returns (a scalar score,
    the input tensors [..., E] it read, which require grad); the relevance is AttnLRP's at those inputs."""
    with AttnLRPMode(softmax_record):
        score, inputs = model_call()
    grads = torch.autograd.grad(score.sum(), inputs, allow_unused=True)
    return score, [(x * g).sum(-1) if g is not None else torch.zeros(x.shape[:-1]) for x, g in zip(inputs, grads)]


@register_explainer("attnlrp")
class AttnLRP(Explainer):
    """AttnLRP (Achtibat et al. 2024) on transformer rankers, natively (`explainers.lrp`): the relevance of the
    explained score at the input embeddings of each piece (embedding . modified gradient), pieces summed into
    words; query words too. Encoder cross-encoders and bi-encoders of every family the adapters read, decoder and
    seq2seq rerankers (their norms, gated MLPs and attention follow the same rules), late interaction (each text's
    encoder pass, MaxSim over the cosines of word vectors). One forward and one backward pass. A bi-encoder's and
    late interaction's score are products of the query's and the document's vectors: the uniform rule gives each
    side half."""

    requires = ("encoder_inputs",)

    def _attribute(self, pair: Pair) -> dict:
        ranker = self.ranker
        seen: list[tuple[str, torch.Tensor, object]] = []

        def run(orig, side, embeds, b):  # the model call of every transformer ranker: its input embeddings
            e = embeds.detach().requires_grad_()
            seen.append((side, e, b))
            return orig(side, e, b)

        sc = self.tracked(self.scorer(pair, "mask"))
        with ranker.wrapped_run(run), frozen(ranker):
            score, rel = attnlrp_relevance(lambda: (sc(sc.full_input().detach())[0], [e for _, e, _ in seen]))
        nq, nd = len(pair.query_tokens), len(pair.doc_tokens)
        out = {"score": float(score), "info": {"rules": "AttnLRP, native (explainers.lrp)"}}
        for (side, _, b), r in zip(seen, rel):
            r = r[0].detach().float().cpu().numpy()
            if side in ("pair", "doc"):
                out["doc_scores"] = pieces_to_words(r, b.widx[0].tolist(), nd)
            if side == "pair" and b.qidx is not None:
                out["query_scores"] = pieces_to_words(r, b.qidx[0].tolist(), nq)
            if side == "query":
                out["query_scores"] = pieces_to_words(r, b.widx[0].tolist(), nq)
        return out
