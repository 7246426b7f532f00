"""Student sampling: prompts, artifacts, resuming after a crash, settings changes."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from skilldistill.errors import ConfigError, InputError
from skilldistill.generate import (
    DEFAULT_INSTRUCTION,
    GENERATIONS_LOG,
    GENERATIONS_PARQUET,
    GenerationConfig,
    run_generation,
)
from skilldistill.llm.base import BackendConfig


class CountingBackend:
    """Wraps the real (tiny) transformers backend and records what it was asked."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.name, self.model = inner, inner.name, inner.model
        self.calls: list[tuple[int, int]] = []  # (conversations, n)
        self.fail_after = fail_after
        self.delivered = 0

    def chat(self, conversations, params, *, on_result=None, progress=None, seeds=None):
        self.calls.append((len(conversations), params.n))
        self.seeds = seeds

        def relay(i, comps):
            if self.fail_after is not None and self.delivered >= self.fail_after:
                raise RuntimeError("simulated crash")
            self.delivered += 1
            on_result(i, comps)

        return self.inner.chat(conversations, params, on_result=relay, progress=progress, seeds=seeds)

    def close(self):
        pass


ITEMS = [
    {"id": "a", "question": "What is 2+3?"},
    {"id": "b", "question": "Compute $\\frac{1}{2}+\\frac{1}{3}$."},
    {"id": "c", "question": "How many primes are below 10?"},
]


def _cfg(model_dir, **kw):
    return GenerationConfig(backend=BackendConfig(kind="transformers", model=str(model_dir), device="cpu", batch_size=2),
                            max_new_tokens=4, **kw)


def test_conversation_and_sampling_params():
    cfg = GenerationConfig(backend=BackendConfig(model="m"), system_prompt="You are careful.", enable_thinking=False)
    assert cfg.temperature == 0.6 and cfg.top_p == 0.95
    assert cfg.conversation("  What is 1+1? ") == [
        {"role": "system", "content": "You are careful."},
        {"role": "user", "content": "What is 1+1?\n\n" + DEFAULT_INSTRUCTION},
    ]
    assert "\\boxed{}" in DEFAULT_INSTRUCTION and "step by step" in DEFAULT_INSTRUCTION
    p = cfg.sampling_params()
    assert (p.temperature, p.top_p, p.max_tokens, p.n, p.seed) == (0.6, 0.95, 8192, 1, 0)
    assert p.chat_template_kwargs == {"enable_thinking": False}
    plain = GenerationConfig(backend=BackendConfig(model="m"), instruction="")
    assert plain.conversation("Q") == [{"role": "user", "content": "Q"}]
    assert plain.sampling_params().chat_template_kwargs == {}
    with pytest.raises(ValueError):
        GenerationConfig(backend=BackendConfig(model="m"), temprature=0.3)  # typo: extra fields are refused


def test_writes_parquet_and_log_with_recorded_settings(tmp_path, tiny_chat_model_dir, tiny_transformers_backend):
    cfg = _cfg(tiny_chat_model_dir, n=2, seed=5, system_prompt="Be brief.")
    table = run_generation(ITEMS, tmp_path, cfg, backend=tiny_transformers_backend, show_progress=False)
    rows = pq.read_table(tmp_path / GENERATIONS_PARQUET).to_pylist()
    assert table.to_pylist() == rows
    assert [(r["id"], r["sample"]) for r in rows] == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0), ("c", 1)]
    r = rows[2]
    assert r["prompt"] == ITEMS[1]["question"] + "\n\n" + DEFAULT_INSTRUCTION and r["system_prompt"] == "Be brief."
    assert (r["seed"], r["temperature"], r["top_p"], r["max_new_tokens"], r["backend"]) == (5, 0.6, 0.95, 4, "transformers")
    assert r["model"] == str(tiny_chat_model_dir)
    assert r["finish_reason"] in {"stop", "length"} and 1 <= r["completion_tokens"] <= 4 and r["prompt_tokens"] > 10
    log = [json.loads(line) for line in (tmp_path / GENERATIONS_LOG).read_text().splitlines()]
    assert len(log) == 6 and {x["gen_hash"] for x in log} == {cfg.fingerprint()}


def test_resumes_after_a_crash_without_redoing_work(tmp_path, tiny_chat_model_dir, tiny_transformers_backend):
    cfg = _cfg(tiny_chat_model_dir, n=2)
    crashing = CountingBackend(tiny_transformers_backend, fail_after=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_generation(ITEMS, tmp_path, cfg, backend=crashing, show_progress=False)
    log_path = tmp_path / GENERATIONS_LOG
    kept = log_path.read_text().splitlines()
    assert len(kept) == 2  # one item (2 samples) finished before the crash
    with open(log_path, "a") as f:
        f.write('{"id": "b", "sample": 0, "resp')  # torn last line from the crash

    resumed = CountingBackend(tiny_transformers_backend)
    table = run_generation(ITEMS, tmp_path, cfg, backend=resumed, show_progress=False)
    assert resumed.calls == [(2, 2)]  # only the two unfinished items, all samples
    rows = table.to_pylist()
    assert len(rows) == 6
    finished_id = json.loads(kept[0])["id"]
    assert [r["response"] for r in rows if r["id"] == finished_id] == [json.loads(x)["response"] for x in kept]

    # a rerun of the finished run samples nothing and writes the same file
    before = (tmp_path / GENERATIONS_PARQUET).read_bytes()
    idle = CountingBackend(tiny_transformers_backend)
    again = run_generation(ITEMS, tmp_path, cfg, backend=idle, show_progress=False)
    assert idle.calls == [] and again.equals(table)
    assert (tmp_path / GENERATIONS_PARQUET).read_bytes() == before


def test_more_samples_later_only_adds_the_missing_ones(tmp_path, tiny_chat_model_dir, tiny_transformers_backend):
    run_generation(ITEMS[:2], tmp_path, _cfg(tiny_chat_model_dir, n=1), backend=tiny_transformers_backend, show_progress=False)
    more = CountingBackend(tiny_transformers_backend)
    table = run_generation(ITEMS, tmp_path, _cfg(tiny_chat_model_dir, n=3), backend=more, show_progress=False)
    assert sorted(more.calls) == [(1, 3), (2, 2)]  # new item: 3 samples; old items: 2 more each
    assert table.num_rows == 9


def test_items_may_be_objects_with_id_and_question(tmp_path, tiny_chat_model_dir, tiny_transformers_backend):
    from dataclasses import dataclass

    @dataclass
    class BenchItem:
        id: str
        question: str
        answer: str

    items = [BenchItem("x1", "What is 3*3?", "9")]
    table = run_generation(items, tmp_path, _cfg(tiny_chat_model_dir), backend=tiny_transformers_backend, show_progress=False)
    assert table.column("id").to_pylist() == ["x1"]


def test_changed_settings_never_reuse_old_rows(tmp_path, tiny_chat_model_dir, tiny_transformers_backend):
    run_generation(ITEMS[:1], tmp_path, _cfg(tiny_chat_model_dir), backend=tiny_transformers_backend, show_progress=False)
    hotter = CountingBackend(tiny_transformers_backend)
    table = run_generation(ITEMS[:1], tmp_path, _cfg(tiny_chat_model_dir, temperature=1.0), backend=hotter, show_progress=False)
    assert hotter.calls == [(1, 1)] and table.column("temperature").to_pylist() == [1.0]


@pytest.mark.parametrize(
    "items, field",
    [
        ([{"id": "a", "question": "Q"}, {"id": "a", "question": "R"}], "id"),
        ([{"id": "a", "question": "  "}], "question"),
        ([{"question": "Q"}], "id"),
    ],
)
def test_bad_items_name_the_row_and_field(tmp_path, items, field):
    with pytest.raises(InputError) as e:
        run_generation(items, tmp_path, GenerationConfig(backend=BackendConfig(model="m")), source="pool.parquet")
    assert e.value.field == field and e.value.file == "pool.parquet" and e.value.row is not None


def test_a_student_that_cannot_load_fails_before_any_work(tmp_path):
    cfg = GenerationConfig(backend=BackendConfig(kind="transformers", model=str(tmp_path / "nope"), device="cpu"))
    with pytest.raises(ConfigError, match="cannot load"):
        run_generation(ITEMS, tmp_path / "out", cfg, show_progress=False)
    assert not (tmp_path / "out" / GENERATIONS_LOG).exists()


def test_sample_seeds_are_per_item_and_index_and_stable():
    cfg = GenerationConfig(backend=BackendConfig(model="m"), seed=7)
    seeds = {(i, k): cfg.sample_seed(i, k) for i in ("a", "b") for k in range(8)}
    assert len(set(seeds.values())) == 16  # every (item, sample) its own stream
    assert cfg.sample_seed("a", 5) == GenerationConfig(backend=BackendConfig(model="other"), seed=7).sample_seed("a", 5)
    assert cfg.sample_seed("a", 5) != GenerationConfig(backend=BackendConfig(model="m"), seed=8).sample_seed("a", 5)
    assert GenerationConfig(backend=BackendConfig(model="m"), seed=None).sample_seed("a", 0) is None


def test_growing_n_asks_only_for_the_new_indices_with_their_own_seeds(tmp_path, tiny_chat_model_dir,
                                                                     tiny_transformers_backend):
    backend = CountingBackend(tiny_transformers_backend)
    run_generation(ITEMS, tmp_path, _cfg(tiny_chat_model_dir, n=2, seed=3, temperature=1.0), backend=backend,
                   show_progress=False)
    run_generation(ITEMS, tmp_path, _cfg(tiny_chat_model_dir, n=4, seed=3, temperature=1.0), backend=backend,
                   show_progress=False)
    cfg = _cfg(tiny_chat_model_dir, n=4, seed=3)
    assert backend.calls[-1] == (3, 2)  # 3 items, the 2 missing samples each
    assert backend.seeds == [[cfg.sample_seed(i["id"], k) for k in (2, 3)] for i in ITEMS]
    rows = pq.read_table(tmp_path / GENERATIONS_PARQUET).to_pylist()
    assert len({r["sample_seed"] for r in rows}) == 12


def test_resume_asks_again_when_a_setting_that_shapes_outputs_or_the_question_changed(
        tmp_path, tiny_chat_model_dir, tiny_transformers_backend):
    cfg = _cfg(tiny_chat_model_dir, n=1)
    run_generation(ITEMS, tmp_path, cfg, backend=CountingBackend(tiny_transformers_backend), show_progress=False)
    # how requests are sent (batch size, device) changes nothing: resumed
    idle = CountingBackend(tiny_transformers_backend)
    run_generation(ITEMS, tmp_path, _cfg(tiny_chat_model_dir, n=1).model_copy(update={"backend": cfg.backend.model_copy(
        update={"batch_size": 7})}), backend=idle, show_progress=False)
    assert idle.calls == []
    # what shapes a sample (extra_body's top_k, model_kwargs) does: asked again
    for change in ({"extra_body": {"top_k": 20}}, {"model_kwargs": {"revision": "other"}}):
        again = CountingBackend(tiny_transformers_backend)
        changed = cfg.model_copy(update={"backend": cfg.backend.model_copy(update=change)})
        run_generation(ITEMS, tmp_path, changed, backend=again, show_progress=False)
        assert again.calls == [(3, 1)], change
    # an id whose question changed is asked again, with its new question
    edited = [dict(ITEMS[0], question="What is 7*8?"), *ITEMS[1:]]
    fresh = CountingBackend(tiny_transformers_backend)
    table = run_generation(edited, tmp_path, cfg, backend=fresh, show_progress=False)
    assert fresh.calls == [(1, 1)]
    assert table.to_pylist()[0]["prompt"].startswith("What is 7*8?")
