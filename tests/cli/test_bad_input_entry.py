"""The third round of bad input (issue 36): what enters from outside (corpus files, references,
translate input, recipes, the Python API) and the fine-tuning and re-run paths. Harness and checks:
tests/fixtures/badinput.py (exit status, one-line message, nothing already written lost, the case's
own check).

Row ids by the issue's points: ``t`` tokenizer (fine-tune copy, retrain compared by content), ``c``
corpus (manifest hashes, one text normalization, pipes, one language), ``y`` recipes (duplicate keys,
ranges), ``o`` outputs (onto an input, averaged checkpoints, long names), ``a`` the Python API.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.badinput import (
    Case,
    Ctx,
    Prepared,
    build_ctx,
    on_copy,
    run_case,
)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    return build_ctx(tmp_path_factory)


SPM_WRITES = ("owner.json",)  # what a successful spm stage may rewrite besides spm/


def spm_again(ctx: Ctx, tmp: Path) -> Prepared:
    """spm run a second time, same corpus and settings, while checkpoints depend on the tokenizer."""
    prep = on_copy("spm")(ctx, tmp)
    prep.outputs = {tmp / "run" / name for name in SPM_WRITES}
    return prep


# ---- the table -------------------------------------------------------------------------------
CASES = [
    # t: tokenizers
    Case("t05-spm-twice-same-tokenizer-kept", spm_again, 0),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, ctx: Ctx, tmp_path: Path):
    run_case(case, ctx, tmp_path)


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
