"""The documents of the local lm-eval tasks in this folder (tiny_choice.yaml, tiny_continuation.yaml).

lm-eval calls `load` through the tasks' `custom_dataset: !function eval_docs.load`, so docs.jsonl is
found next to this file from any working directory (a YAML `dataset_kwargs: data_files:` path would be
resolved by `datasets` against the working directory instead). The dataset is built in memory: no
download and no Hugging Face datasets cache. Used by tests/test_evaluate.py and the README's example:

    python -m models.evaluate CKPT --tasks tiny_choice,tiny_continuation --include-path tests/data/eval_task
"""

import json
from pathlib import Path

DOCS = Path(__file__).with_name("docs.jsonl")


def load(**_task_metadata):
    """{"test": the 8 documents of docs.jsonl} as a datasets.DatasetDict; lm-eval passes the task's
    metadata (version, model arguments) as keywords, which these documents do not depend on."""
    import datasets

    docs = [json.loads(line) for line in DOCS.read_text().splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})
