"""The benchmark problems a corpus is checked against: registered benchmark names, or files
and folders of ``.jsonl``/``.json``/``.parquet`` rows with a ``problem``/``question`` field."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..benchmarks import BENCHMARKS, load_benchmark
from ..errors import InputError
from ..rows import Row, iter_local_rows, list_local_files, text_problem, to_text
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
        if not s.strip():  # Path("") is ".": every problem file under the current folder
            raise InputError(f"empty --exclude entry {s!r}: name a benchmark or a file/folder of problems",
                             field="exclude")
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
        before = len(out)
        for row in iter_local_rows(f):
            out.add(name, *_row_problem(f, row))
        if len(out) == before:  # an empty or blank file would remove nothing, and say nothing
            raise InputError("exclusion file holds no problems: nothing would be removed from the corpus", file=f)


def _row_problem(f: Path, row: Row) -> tuple[str, str]:
    """(id, question) of one exclusion row. A row that cannot be read whole stops the load (a
    problem left unread would stay in the corpus), and so does a question that is not text or blank."""
    data = row.data
    if data is None:
        raise InputError(f"unreadable row in an exclusion file ({row.error or 'not an object'})", file=f, row=row.line)
    # per row: a file mixing "problem" and "question" rows must not skip either kind
    present = [k for k in QUESTION_FIELDS if data.get(k) is not None]
    qfield = next((k for k in present if isinstance(data[k], str) and data[k].strip()), None)
    if qfield is None and not present:
        raise InputError(f"no question (looked for {', '.join(QUESTION_FIELDS)})", file=f, row=row.line)
    if qfield is None:
        why = text_problem(data[present[0]], "question")
        raise InputError(why or "blank question", file=f, row=row.line, field=present[0])
    pid = to_text(data.get("id") or data.get("unique_id")) or f"{f.name}:{row.line}"
    return pid, data[qfield]


def load_question_set(paths: Sequence[str | Path]) -> set[str]:
    """Normalised questions of benchmark files or registered benchmark names."""
    return {normalize_question(q) for q in load_benchmark_problems(paths).questions}
