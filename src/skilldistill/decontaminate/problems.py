"""The benchmark problems a corpus is checked against: registered benchmark names, or files
and folders of ``.jsonl``/``.json``/``.parquet`` rows with a ``problem``/``question`` field."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..benchmarks import BENCHMARKS, load_benchmark
from ..errors import InputError
from ..rows import iter_local_rows, list_local_files, to_text
from ..textutil import normalize_question

QUESTION_FIELDS = ("problem", "question", "Problem", "Question", "prompt")


@dataclass
class BenchmarkProblems:
    """Benchmark problems to match against: which benchmark, its id, its text."""

    benchmark: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # benchmark -> file or registry name it came from

    def __len__(self) -> int:
        return len(self.questions)

    def add(self, benchmark: str, pid: str, question: str) -> None:
        self.benchmark.append(benchmark)
        self.ids.append(pid)
        self.questions.append(question)

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.benchmark))


def load_benchmark_problems(entries: Sequence[str | Path], *, data_dir: str | Path | None = None) -> BenchmarkProblems:
    """Problems of each entry: a registered benchmark name, or a file/folder of rows."""
    out = BenchmarkProblems()
    for entry in entries:
        s = str(entry)
        p = Path(s).expanduser()
        if not p.exists() and s in BENCHMARKS:
            for item in load_benchmark(s, data_dir=data_dir):
                out.add(s, item.id, item.question)
            out.sources[s] = f"{data_dir}/{BENCHMARKS[s].local_name or s}" if data_dir else BENCHMARKS[s].hf_id
            continue
        if not p.exists():
            raise InputError(f"exclusion file not found (nor a benchmark name: {', '.join(BENCHMARKS)})", file=p)
        _add_file_problems(out, p)
    return out


def _add_file_problems(out: BenchmarkProblems, p: Path) -> None:
    # benchmarks/math500/test.jsonl -> math500; a lone file -> its stem
    name = p.parent.name if p.is_file() and p.stem in ("test", "train", "validation") else p.stem
    out.sources[name] = str(p)
    for f in list_local_files(p):
        for row in iter_local_rows(f):
            if row.data is None:  # a problem left unread would stay in the corpus: read it whole or stop
                raise InputError(f"unreadable row in an exclusion file ({row.error or 'not an object'})",
                                 file=f, row=row.line)
            # per row: a file mixing "problem" and "question" rows must not skip either kind
            qfield = next((k for k in QUESTION_FIELDS if to_text(row.data.get(k))), None)
            if qfield is None:
                raise InputError(f"no question (looked for {', '.join(QUESTION_FIELDS)})", file=f, row=row.line)
            q = to_text(row.data.get(qfield))
            if q and q.strip():
                pid = to_text(row.data.get("id") or row.data.get("unique_id")) or f"{f.name}:{row.line}"
                out.add(name, pid, q)


def load_question_set(paths: Sequence[str | Path]) -> set[str]:
    """Normalised questions of benchmark files or registered benchmark names."""
    return {normalize_question(q) for q in load_benchmark_problems(paths).questions}
