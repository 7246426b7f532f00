"""Run under ``accelerate launch`` (or alone): record which examples each optimizer step of
``skilldistill.train``'s trainer feeds this process, one JSON file per rank.

    python tests/distributed/batches_per_step.py DATA STUDENT OUT_JSON_PREFIX BATCH
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from skilldistill.train import TrainConfig
from skilldistill.train.trainer import build_trainer


def main() -> None:
    data, student, prefix, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    config = TrainConfig(model=student, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
                         num_train_epochs=1, bf16=False, save_strategy="no", seed=0, max_length=512,
                         learning_rate=1e-3, gradient_checkpointing=False)
    setup = build_trainer(data, Path(prefix).parent / "trainer-out", config, progress=False)
    steps = []
    for batch_inputs in setup.trainer.get_train_dataloader():
        pad = setup.tokenizer.pad_token_id
        rows = [[t for t in ids.tolist() if t != pad] for ids in batch_inputs["input_ids"]]
        steps.append(sorted(hashlib.sha256(json.dumps(r).encode()).hexdigest()[:16] for r in rows))
    rank = int(os.environ.get("RANK", "0"))
    Path(f"{prefix}-rank{rank}.json").write_text(json.dumps(steps))


if __name__ == "__main__":
    main()
