"""Benchmark: what the Great Expectations checks cost per batch, next to the mapping they guard.

Builds web shop customer rows (0.5% of them bad: bad emails, unknown tier codes,
unparseable birth dates, a warn-level phone format) and validates them with the
``webshop_to_crm`` customer suite the engine generates from the configuration, the way
the engine does: chunk by chunk with one context and suite reused. For comparison it
also times one GX call on the whole batch, and the canonical mapping of the same rows.

    python bench/quality_bench.py --sizes 1000 100000 1000000 --chunk 5000
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import datetime

import numpy as np
import pandas as pd

from truesync.config import load_config
from truesync.core.canonical import to_canonical
from truesync.quality.checks import build_checks, suite_for, validation_frame

FLOW, ENTITY, SOURCE = "webshop_to_crm", "customer", "webshop"


def customers(n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` web shop customer rows; every 200th is broken in one of four ways."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:08d}" for i in range(n)], dtype=object)
    frame = pd.DataFrame(
        {
            "ext_id": ids,
            "email_address": np.char.add(np.char.lower(ids.astype(str)), "@example.com").astype(object),
            "full_name": rng.choice(["Ada Lovelace", "Alan Turing", "Grace Hopper"], n).astype(object),
            "phone": np.char.add("+44 20 7", rng.integers(1_000_000, 9_999_999, n).astype(str)).astype(object),
            "address": "1 Main Street, Leeds",
            "birth_date": "1980-05-17",
            "tier_code": rng.choice(["G", "S", "B"], n).astype(object),
            "updated_at": datetime(2026, 11, 1, 12),
        },
        dtype=object,
    )
    bad = np.arange(0, n, 200)
    kinds = ["email_address", "tier_code", "birth_date", "phone"]
    broken = {"email_address": "no-at-sign", "tier_code": "X", "birth_date": "31/02/1990", "phone": "call me"}
    for position, row in enumerate(bad):
        column = kinds[position % 4]
        frame.at[row, column] = broken[column]
    return frame


def measure(n: int, chunk: int) -> dict[str, float]:
    config = load_config()
    spec, mapping = config.entities[ENTITY], config.entity_mapping(SOURCE, ENTITY)
    fields = list(mapping.fields)
    raw = customers(n)
    began = time.perf_counter()
    suite = suite_for(f"bench.{n}", spec, mapping, fields, config)
    setup = time.perf_counter() - began

    began, held = time.perf_counter(), 0
    for start in range(0, n, chunk):
        held += len(suite.validate(validation_frame(raw.iloc[start : start + chunk], mapping, spec)).failures)
    chunked = time.perf_counter() - began

    began = time.perf_counter()
    whole = suite.validate(validation_frame(raw, mapping, spec))
    one_call = time.perf_counter() - began
    assert len(whole.failures) == held, (len(whole.failures), held)

    began = time.perf_counter()
    for start in range(0, n, chunk):
        to_canonical(raw.iloc[start : start + chunk], mapping, spec, fields)
    mapping_seconds = time.perf_counter() - began
    return {"rows": n, "checks": len(build_checks(spec, mapping, fields)), "setup_s": setup, "chunked_s": chunked,
            "whole_s": one_call, "mapping_s": mapping_seconds, "held": held}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    parser.add_argument("--chunk", type=int, default=5000, help="rows per chunk (the flows' chunk_size)")
    args = parser.parse_args()
    print("| rows | checks | suite setup | GX per chunk (total) | rows/s | GX in one call | mapping (total) | held |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in args.sizes:
        r = measure(n, args.chunk)
        print(
            f"| {n:,} | {r['checks']} | {r['setup_s']:.2f} s | {r['chunked_s']:.2f} s | {n / r['chunked_s']:,.0f} "
            f"| {r['whole_s']:.2f} s | {r['mapping_s']:.2f} s | {r['held']:,} |"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MiB (the one-call run holds the whole batch; the engine never does)")


if __name__ == "__main__":
    main()
