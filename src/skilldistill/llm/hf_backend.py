"""Local chat model through transformers: batched ``generate`` on CPU or GPU.

    from skilldistill.llm.base import BackendConfig, SamplingParams
    from skilldistill.llm.hf_backend import TransformersBackend

    backend = TransformersBackend(BackendConfig(kind="transformers", model="Qwen/Qwen3-0.6B"))
    [[completion]] = backend.chat([[{"role": "user", "content": "1+1?"}]], SamplingParams(max_tokens=64))

Prompts go through the model's own chat template (``apply_chat_template`` with the
sampling params' ``chat_template_kwargs``, e.g. Qwen3's ``enable_thinking``). Prompts are
sorted by length and padded on the left into mini-batches of ``batch_size``
conversations (each with ``n`` samples), so little compute goes to padding. A GGUF
checkpoint loads with ``gguf_file`` (transformers dequantises it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..progress import library_bars_off
from .base import BackendConfig, Completion, Conversation, ResultCallback, SamplingParams

logger = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16", "half": "float16"}


def resolve_device(spec: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other values as given."""
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} asked for, but no CUDA device is visible")
    return spec


class TransformersBackend:
    """A :class:`~skilldistill.llm.base.ChatBackend` on ``AutoModelForCausalLM``.

    Loading happens in the constructor, so a model that cannot be loaded fails before
    any work starts (as :class:`~skilldistill.errors.ConfigError`).
    """

    name = "transformers"

    def __init__(self, cfg: BackendConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.model = cfg.model
        self.device = resolve_device(cfg.device)
        if cfg.dtype == "auto":
            # bf16 on GPU (what reasoning models are trained in); fp32 on CPU, where
            # bf16 matmuls are slow or unsupported.
            dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            if cfg.dtype not in _DTYPES:
                raise ConfigError(f"unknown dtype {cfg.dtype!r}; use auto, {', '.join(sorted(set(_DTYPES.values())))}")
            dtype = getattr(torch, _DTYPES[cfg.dtype])
        self.dtype = dtype

        tok_src = cfg.tokenizer or cfg.model
        tok_kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
        if cfg.gguf_file and not cfg.tokenizer:
            tok_kwargs["gguf_file"] = cfg.gguf_file
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tok_src, **tok_kwargs)
        except Exception as e:
            raise ConfigError(f"cannot load the tokenizer of student model {tok_src!r}: {type(e).__name__}: {e}") from e
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"  # decoder-only: new tokens follow the prompt
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"student model {tok_src!r} has no chat template (needed to build prompts)")

        model_kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": cfg.trust_remote_code, **cfg.model_kwargs}
        if cfg.gguf_file:
            model_kwargs["gguf_file"] = cfg.gguf_file
        # A local folder loads with no bar (our stage logs it); a hub id keeps the download bars.
        quiet = library_bars_off() if Path(cfg.model).is_dir() else contextlib.nullcontext()
        try:
            with quiet:
                self._model = AutoModelForCausalLM.from_pretrained(cfg.model, **model_kwargs)
        except Exception as e:
            raise ConfigError(f"cannot load student model {cfg.model!r}: {type(e).__name__}: {e}") from e
        self._model.to(self.device)
        self._model.eval()

        eos = set()
        gen_eos = getattr(self._model.generation_config, "eos_token_id", None)
        for t in (gen_eos if isinstance(gen_eos, list) else [gen_eos]) + [self.tokenizer.eos_token_id]:
            if t is not None:
                eos.add(int(t))
        self.eos_token_ids = sorted(eos)

    # ------------------------------------------------------------------------------
    def render(self, conversation: Conversation, chat_template_kwargs: dict[str, Any] | None = None) -> str:
        """The prompt text for one conversation (chat template + generation prompt)."""
        return self.tokenizer.apply_chat_template(
            list(conversation), tokenize=False, add_generation_prompt=True, **(chat_template_kwargs or {})
        )

    def chat(
        self,
        conversations: Sequence[Conversation],
        params: SamplingParams,
        *,
        on_result: ResultCallback | None = None,
        progress: Callable[[int], None] | None = None,
        seeds: Sequence[Sequence[int | None]] | None = None,
    ) -> list[list[Completion]]:
        """``params.n`` completions per conversation, in input order.

        Sampling draws each sample from its own random stream (a ``torch.Generator`` per
        sample, seeded with ``seeds[i][k]``, else ``params.seed + k`` mixed with the
        conversation's index), so a sample does not depend on what else is in its batch:
        the next token is the argmax of the temperature-scaled, top-p-filtered logits plus
        Gumbel noise from that stream, which is an exact draw from the same distribution.
        """
        import torch

        prompts = [self.render(c, params.chat_template_kwargs) for c in conversations]
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        # Longest first: similar lengths share a batch (less padding) and an out-of-memory
        # error shows up on the first batch, not after an hour.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        results: list[list[Completion] | None] = [None] * len(conversations)
        do_sample = params.temperature > 0
        if seeds is not None and (len(seeds) != len(conversations) or any(len(s) != params.n for s in seeds)):
            raise ValueError(f"seeds must give {params.n} seed(s) for each of the {len(conversations)} conversations")
        # Greedy decoding gives one answer; decode once and repeat it n times (what vLLM returns too).
        n_seq = params.n if do_sample else 1
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "do_sample": False,  # sampling is done by the Gumbel processor below, per sample
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.eos_token_ids,
        }
        # The model's generation_config must not add its own sampling settings to greedy search.
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            gen_kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)

        bs = self.cfg.batch_size
        for start in range(0, len(order), bs):
            batch = order[start : start + bs]
            enc = self.tokenizer.pad({"input_ids": [ids[i] for i in batch]}, padding=True, return_tensors="pt")
            # n samples of a prompt: n rows (greedy search takes no num_return_sequences)
            enc = {k: v.repeat_interleave(n_seq, dim=0).to(self.device) for k, v in enc.items()}
            prompt_len = enc["input_ids"].shape[1]
            kwargs = dict(gen_kwargs)
            if do_sample:
                row_seeds = [_row_seed(seeds[i][k] if seeds is not None else None, params.seed, i, k)
                             for i in batch for k in range(n_seq)]
                kwargs["logits_processor"] = _sampling_processors(params, row_seeds, self.device)
            with torch.inference_mode():
                out = self._model.generate(**enc, **kwargs)
            new = out[:, prompt_len:].tolist()
            for j, i in enumerate(batch):
                comps = [self._completion(new[j * n_seq + (k % n_seq)], len(ids[i]), params) for k in range(params.n)]
                results[i] = comps
                if on_result:
                    on_result(i, comps)
            if progress:
                progress(len(batch))
        return [r or [] for r in results]

    def _completion(self, tokens: list[int], prompt_tokens: int, params: SamplingParams) -> Completion:
        eos = set(self.eos_token_ids)
        end = next((k for k, t in enumerate(tokens) if t in eos), None)
        if end is not None:
            used, finish = tokens[: end + 1], "stop"
        else:
            # Past the last real token come only pad tokens (another sequence ran longer).
            used = tokens
            while used and used[-1] == self.tokenizer.pad_token_id and self.tokenizer.pad_token_id not in eos:
                used = used[:-1]
            finish = "length" if len(used) >= params.max_tokens else "stop"
        text = self.tokenizer.decode(used, skip_special_tokens=True)
        return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=len(used))

    def close(self) -> None:
        import torch

        self._model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _row_seed(explicit: int | None, base: int | None, conversation: int, sample: int) -> int | None:
    if explicit is not None:
        return explicit
    if base is None:
        return None
    return (base * 1_000_003 + conversation * 8191 + sample) % (2**63 - 1)


def _sampling_processors(params: SamplingParams, row_seeds: list[int | None], device: str) -> Any:
    """Temperature, top-p, then per-row Gumbel noise: argmax of the result samples each row
    from softmax(top_p(logits / T)) with that row's own generator."""
    import torch
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    gens = []
    for s in row_seeds:
        g = torch.Generator(device=device)
        if s is None:
            g.seed()
        else:
            g.manual_seed(int(s))
        gens.append(g)

    class PerRowGumbel:
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            noise = torch.empty_like(scores, dtype=torch.float32)
            for r, g in enumerate(gens):
                noise[r].exponential_(generator=g)  # Gumbel(0,1) = -log(Exp(1))
            return scores.float() - torch.log(noise)

    procs = [TemperatureLogitsWarper(params.temperature)]
    if params.top_p < 1.0:
        procs.append(TopPLogitsWarper(params.top_p))
    procs.append(PerRowGumbel())
    return LogitsProcessorList(procs)
