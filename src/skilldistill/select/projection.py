"""A seeded random projection of long vectors to ``k`` dimensions (the ``less`` strategy's gradient features).

The matrix ``P`` (``d x k``) has independent Rademacher entries ``±1/sqrt(k)`` (the JL projection TRAK and LESS
use), so inner products are preserved in expectation: ``E[<xP, yP>] = <x, y>``. It is a fixed function of the
seed, ``d`` and ``k``: rows ``[b * BLOCK_ROWS, (b + 1) * BLOCK_ROWS)`` come from their own PCG64 stream seeded
with ``(seed, b)``, so any block can be regenerated alone, in any order, on any machine, and the result never
depends on how many vectors are projected at once.

Memory: the whole matrix is kept (generated once) when it takes at most ``CACHE_BYTES`` (256 MiB as float32);
otherwise it is regenerated block by block on every call, one block (``BLOCK_ROWS x k`` float32, 32 MiB at
``k = 8192``) at a time, so the peak beyond the input and output is one block (plus its random bits, an eighth of
it). Generating costs about 0.7 ns per entry on one CPU core (numpy's raw bytes unpacked into signs), so callers
project many vectors per call (``item_gradients`` buffers a group of items first).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BLOCK_ROWS = 1024
CACHE_BYTES = 256 * 2**20


class Projection:
    """``x -> x @ P`` for a ``d x k`` Rademacher matrix drawn from ``seed``, generated in blocks of rows."""

    def __init__(self, d: int, k: int, seed: int, *, device: str = "cpu", cache_bytes: int | None = None) -> None:
        self.d, self.k, self.seed, self.device = d, k, seed, device
        self.cached = d * k * 4 <= (CACHE_BYTES if cache_bytes is None else cache_bytes)
        self._blocks: dict[int, Any] = {}
        self._buffer: Any = None  # one reused block when not cached (a fresh allocation per block is slow)

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.d / BLOCK_ROWS)

    @property
    def peak_bytes(self) -> int:
        """The projection's own memory at its peak: the cached matrix, or one block and its random bits."""
        if self.cached:
            return self.d * self.k * 4
        rows = min(BLOCK_ROWS, self.d)
        return rows * self.k * 4 + rows * self.k // 8 + rows * self.k  # block, its bits, the unpacked signs

    def block(self, b: int) -> Any:
        """Rows ``[b * BLOCK_ROWS, ...)`` of ``P`` as a float32 tensor on the device."""
        import torch

        if b in self._blocks:
            return self._blocks[b]
        rows = min(BLOCK_ROWS, self.d - b * BLOCK_ROWS)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, b])))
        signs = np.unpackbits(np.frombuffer(rng.bytes((rows * self.k + 7) // 8), dtype=np.uint8))[:rows * self.k]
        if self.cached:
            out = torch.empty(rows, self.k, dtype=torch.float32)
        else:
            if self._buffer is None or self._buffer.shape[0] < rows:
                self._buffer = torch.empty(min(BLOCK_ROWS, self.d), self.k, dtype=torch.float32)
            out = self._buffer[:rows]
        out.copy_(torch.from_numpy(signs).view(rows, self.k))
        scale = 1.0 / math.sqrt(self.k)
        out.mul_(2 * scale).sub_(scale)  # {0, 1} -> {-1, +1} / sqrt(k)
        out = out.to(self.device)
        if self.cached:
            self._blocks[b] = out
        return out

    def __call__(self, x: Any) -> Any:
        """``x @ P`` for ``x`` of shape ``(n, d)`` (float32, on the device): shape ``(n, k)``."""
        import torch

        if x.shape[-1] != self.d:
            raise ValueError(f"projection of {self.d} dimensions applied to vectors of {x.shape[-1]}")
        y = torch.zeros(x.shape[0], self.k, dtype=torch.float32, device=x.device)
        for b in range(self.n_blocks):
            lo = b * BLOCK_ROWS
            part = x[:, lo:lo + BLOCK_ROWS]
            y.addmm_(part, self.block(b))
        return y

    def matrix(self) -> Any:
        """The whole ``d x k`` matrix (for checks on small ``d``)."""
        import torch

        return torch.cat([self.block(b).clone() for b in range(self.n_blocks)])
