"""One vLLM engine in its own process: ``python -m skilldistill.llm.vllm_engine``.

The :class:`~skilldistill.llm.vllm_backend.VLLMBackend` starts one of these per engine
(data-parallel rank) as a :class:`~skilldistill.subproc.Worker`, so building an engine
works from any caller (no ``__main__`` guard needed, no daemonic parent: vLLM starts
processes of its own) and closing it frees everything it held (its process ends).

Messages (parent -> engine, engine -> parent):

- ``("init", llm_kwargs)`` -> ``("ready", info)`` or ``("error", text)``;
- ``("chat", batch)`` -> ``("ok", completions)``, ``("error", text)`` (this batch refused) or
  ``("dead", text)`` (the engine core died), where ``batch`` is
  ``{"messages": [conversation, ...], "params": [sampling dict, ...],
  "chat_template_kwargs": {...}}`` (one request per conversation, n = 1 each) and
  ``completions`` one dict per request (text, finish_reason, prompt_tokens,
  completion_tokens);
- ``None``: shut the engine core down and exit.
"""

from __future__ import annotations

import gc
import os
import traceback
from typing import Any


def _error(e: BaseException) -> tuple[str, str]:
    last = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return ("error", f"{type(e).__name__}: {e}{where}")


def _sampling(vllm: Any, d: dict[str, Any]) -> Any:
    return vllm.SamplingParams(
        n=1, temperature=d["temperature"], top_p=d["top_p"], max_tokens=d["max_tokens"], seed=d.get("seed"),
        stop=list(d.get("stop") or []) or None,
    )


def _completion(out: Any) -> dict[str, Any]:
    o = out.outputs[0]
    prompt_ids = getattr(out, "prompt_token_ids", None)
    return {
        "text": o.text,
        # vLLM: "stop" (EOS or a stop string), "length" (max_tokens or max_model_len), "abort"
        "finish_reason": o.finish_reason,
        "prompt_tokens": len(prompt_ids) if prompt_ids is not None else None,
        "completion_tokens": len(o.token_ids) if getattr(o, "token_ids", None) is not None else None,
    }


def main() -> None:
    from ..subproc import child_channel

    conn = child_channel()
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    llm = vllm = None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        kind, payload = msg
        try:
            if kind == "init":
                import vllm as _vllm

                vllm = _vllm
                llm = vllm.LLM(**payload)
                sched = llm.llm_engine.vllm_config.scheduler_config
                conn.send(("ready", {"vllm": vllm.__version__, "pid": os.getpid(),
                                     "max_model_len": llm.llm_engine.model_config.max_model_len,
                                     "chunked_prefill": bool(sched.enable_chunked_prefill)}))
            elif kind == "chat":
                assert llm is not None and vllm is not None, "chat before init"
                outs = llm.chat(payload["messages"], sampling_params=[_sampling(vllm, p) for p in payload["params"]],
                                use_tqdm=False, chat_template_kwargs=payload.get("chat_template_kwargs") or None)
                if len(outs) != len(payload["messages"]):
                    raise RuntimeError(f"vLLM returned {len(outs)} outputs for {len(payload['messages'])} requests")
                conn.send(("ok", [_completion(o) for o in outs]))
            else:
                conn.send(("error", f"unknown message {kind!r}"))
        except Exception as e:  # reported to the parent, which decides
            kind_, text = _error(e)
            # A dead engine core answers nothing again: never a per-request refusal.
            conn.send(("dead" if type(e).__name__ == "EngineDeadError" else kind_, text))
    if llm is not None:
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # pragma: no cover - best effort on the way out
            pass
        del llm
        gc.collect()


if __name__ == "__main__":
    main()
