"""Per-example gradients of a causal LM's training loss with respect to a chosen parameter set, for a whole
batch from one forward and one backward pass (the ``less`` strategy's features, before projection).

The loss of an example is its mean negative log-likelihood over the assistant tokens of the training example
(what :func:`skilldistill.select.item_loss.forward_nll` sums, divided by the count): the batch's loss is the
sum of its examples' means, so the gradient reaching each example's activations is that of its own loss (right
padding never reaches a real token: attention is causal and masked).

The parameters (``params``):

- ``lora``: LoRA adapters (rank ``rank``) on the attention projections (``q_proj``, ``k_proj``, ``v_proj``,
  ``o_proj``) of every decoder layer, as LESS places them. ``A`` is initialised as peft does (Kaiming-uniform,
  bound ``1/sqrt(d_in)``) from the seed; ``B`` is zero, as peft initialises it, so the adapted model is exactly
  the student. With ``B = 0`` the gradient with respect to ``A`` is identically zero, and the gradient with
  respect to ``B`` of ``W + B A`` is ``dL/dW A^T``: the full weight gradient sketched by the random ``A``. The
  features are these ``B`` gradients (``d_out x rank`` per projection). LESS instead trains the adapters for a
  warmup first (so ``B != 0``); a non-zero random ``B`` without training would score a perturbed model and make
  the ``A`` gradients scale with ``B``'s initialisation rather than with the data, so it is not done.
- ``last_layers``: the full weights (and biases) of every ``nn.Linear`` in the last ``layers`` decoder layers
  (norm weights left out); the graph starts at those layers' input, so the earlier layers run forward only.

Per-example gradients of a linear layer ``y = x W^T`` come from its input ``x`` and output gradient ``g``
(hooks): ``dL_b/dW = g_b^T x_b`` summed over the example's positions, ``dL_b/dB = g_b^T (x_b A^T)``; no per-example
backward pass and no weight gradient of the batch is ever formed. The flattened vector concatenates the modules
in model order, each row-major.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .item_loss import Example, LossModel, head_is_projection, pad_batch

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
_HEAD_ROWS = 2048  # token positions whose logits exist at once


@dataclass
class GradientModel:
    """A loaded model with the modules whose gradients make the features."""

    lm: LossModel
    params: str  # "lora" | "last_layers"
    names: list[str]  # the modules, in model order
    modules: list[Any]
    lora_a: list[Any]  # per module: the LoRA A (rank x d_in), or None (last_layers)
    layers: Any  # the decoder layers (ModuleList)
    first_layer: int  # the graph starts at this layer's input
    offsets: list[int] = field(default_factory=list)  # each module's first coordinate; the last: d

    @property
    def d(self) -> int:
        return self.offsets[-1]


def decoder_layers(model: Any) -> Any:
    """The model's decoder layers: its longest ``nn.ModuleList`` holding linear layers."""
    import torch.nn as nn

    best = None
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) and any(
                isinstance(m, nn.Linear) for m in module[0].modules()):
            if best is None or len(module) > len(best):
                best = module
    return best


def gradient_model(lm: LossModel, params: str, *, rank: int, layers: int, seed: int) -> GradientModel:
    """The modules of ``params`` found in the model (a ConfigError naming the model when there are none), the
    LoRA ``A`` matrices drawn from ``seed``; every weight of the model frozen (no weight gradient is formed)."""
    import torch
    import torch.nn as nn

    blocks = decoder_layers(lm.model)
    if blocks is None:
        raise ConfigError(f"less_model {lm.name!r}: no decoder layers (a list of blocks with linear layers) found")
    if params == "last_layers" and layers > len(blocks):
        raise ConfigError(f"less_layers {layers}: the model {lm.name!r} has {len(blocks)} decoder layers")
    lm.model.requires_grad_(False)
    first = len(blocks) - layers if params == "last_layers" else 0
    names, modules = [], []
    for i in range(first, len(blocks)):
        for name, m in blocks[i].named_modules():
            if isinstance(m, nn.Linear) and (params != "lora" or name.rsplit(".", 1)[-1] in LORA_TARGETS):
                names.append(f"layers.{i}.{name}")
                modules.append(m)
    if not modules:
        raise ConfigError(f"less_model {lm.name!r}: no linear layer named {', '.join(LORA_TARGETS)} in its decoder "
                          "layers for LoRA (less_params: last_layers takes every linear layer)")
    gen = torch.Generator().manual_seed(seed)
    lora_a = []
    for m in modules:
        if params == "lora":
            bound = 1.0 / m.in_features ** 0.5
            a = torch.rand(rank, m.in_features, generator=gen, dtype=torch.float32) * (2 * bound) - bound
            lora_a.append(a.to(lm.device))
        else:
            lora_a.append(None)
    first_used = min(int(n.split(".")[1]) for n in names)
    gm = GradientModel(lm, params, names, modules, lora_a, blocks, first_used)
    sizes = [m.out_features * (rank if params == "lora" else m.in_features + (m.bias is not None)) for m in modules]
    gm.offsets = [0]
    for s in sizes:
        gm.offsets.append(gm.offsets[-1] + s)
    return gm


def per_example_gradients(gm: GradientModel, batch: list[Example]) -> tuple[Any, list[tuple[float, int]]]:
    """The ``(n, d)`` float32 per-example gradients of each example's mean assistant-token loss, and per example
    the summed NLL of its assistant tokens and their count (as :func:`~.item_loss.forward_nll`)."""
    import torch

    lm = gm.lm
    if lm.chunked_head is None:
        lm.chunked_head = head_is_projection(lm, batch[0][0])
    ids, attention, sel = pad_batch(lm, batch)
    out = torch.zeros(len(batch), gm.d, dtype=torch.float32, device=lm.device)
    handles = [gm.layers[gm.first_layer].register_forward_pre_hook(_graph_starts_here, with_kwargs=True)]
    handles += [m.register_forward_hook(_gradient_hook(gm, k, out)) for k, m in enumerate(gm.modules)]
    try:
        with torch.enable_grad():
            nll = _backward_mean_losses(lm, ids, attention, sel)
    finally:
        for h in handles:
            h.remove()
    return out, nll


def _graph_starts_here(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The first layer's input as a leaf needing a gradient: the layers before it run without a graph."""
    if args:
        return (args[0].detach().requires_grad_(), *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": kwargs["hidden_states"].detach().requires_grad_()}


def _gradient_hook(gm: GradientModel, k: int, out: Any) -> Any:
    """A forward hook on module ``k``: keeps its input and, when its output's gradient arrives, writes each
    example's gradient into ``out[:, offsets[k]:offsets[k + 1]]``."""
    import torch

    lo, hi = gm.offsets[k], gm.offsets[k + 1]
    a = gm.lora_a[k]

    def hook(module: Any, inputs: tuple, output: Any) -> None:
        if not output.requires_grad:
            return
        n = output.shape[0]
        x = inputs[0].detach().reshape(n, -1, module.in_features)

        def on_grad(g: Any) -> None:
            g32 = g.reshape(n, -1, module.out_features).float()
            x32 = x.float() if a is None else x.float() @ a.T
            grad = torch.einsum("bto,bti->boi", g32, x32).reshape(n, -1)
            if a is None and module.bias is not None:
                grad = torch.cat([grad, g32.sum(dim=1)], dim=1)
            out[:, lo:hi] += grad

        output.register_hook(on_grad)

    return hook


def _backward_mean_losses(lm: LossModel, ids: Any, attention: Any, sel: Any) -> list[tuple[float, int]]:
    """Forward, then backward of the sum of the examples' mean losses; the logits made ``_HEAD_ROWS`` positions
    at a time from the last hidden state (their gradient passed back chunk by chunk) when the head is a projection."""
    import torch
    import torch.nn.functional as F

    rows = sel.nonzero()[:, 0]
    targets = ids[:, 1:][sel]
    counts = sel.sum(dim=1)
    weight = (1.0 / counts.clamp(min=1).double())[rows].float()
    sums = torch.zeros(len(ids), dtype=torch.float64, device=lm.device)
    if lm.chunked_head:
        base = getattr(lm.model, lm.model.base_model_prefix)
        states = base(input_ids=ids, attention_mask=attention, use_cache=False).last_hidden_state[:, :-1][sel]
        head = lm.model.get_output_embeddings()
        grad_states = torch.zeros_like(states)
        for s in range(0, len(targets), _HEAD_ROWS):
            part = states[s:s + _HEAD_ROWS].detach().requires_grad_()
            nll = F.cross_entropy(head(part).float(), targets[s:s + _HEAD_ROWS], reduction="none")
            (grad_states[s:s + _HEAD_ROWS],) = torch.autograd.grad((nll * weight[s:s + _HEAD_ROWS]).sum(), part)
            sums.index_add_(0, rows[s:s + _HEAD_ROWS], nll.detach().double())
        states.backward(grad_states)
    else:
        logits = lm.model(input_ids=ids, attention_mask=attention, use_cache=False).logits[:, :-1][sel].float()
        nll = F.cross_entropy(logits, targets, reduction="none")
        (nll * weight).sum().backward()
        sums.index_add_(0, rows, nll.detach().double())
    return [(float(v), int(c)) for v, c in zip(sums.tolist(), counts.tolist(), strict=True)]
