"""Choosing pipeline settings so that every reported figure comes from a sequence the choice
never saw: leave one sequence out.

For each sequence in turn, every setting of a grid (threshold, tracker rules: any dotted
pipeline key) is replayed on the cached maps of the *other* sequences; the setting with the best
pooled objective there is then scored on the one left out.  The held-out scores, one per
sequence, are the honest figures; the setting chosen on all sequences is what a pipeline ships.

Objective: tracks' Pd - FA_COST x false tracks per frame - SWITCH_COST x ID switches per
sequence.  0.2 false tracks per frame (the goal's limit) costs as much as 10 points of Pd.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from irstream.config import override
from irstream.eval.tracks import EvalSequence, SequenceMaps, SequenceResult, evaluate_sequence, pooled

#: Pd points one false track per frame is worth in the objective.
FA_COST = 0.5
#: Pd points one ID switch (per sequence) is worth.
SWITCH_COST = 0.01


def objective(r: SequenceResult, sequences: int = 1) -> float:
    return r.tracks.pd - FA_COST * r.tracks.fa_per_frame - SWITCH_COST * r.mot["IDSW"] / max(1, sequences)


def grid_points(grid: dict[str, list]) -> list[dict]:
    """{"tracker.x": [1, 2], "targets.y": [3]} -> [{"tracker.x": 1, "targets.y": 3}, ...]."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


@dataclass
class HeldOut:
    sequence: str
    chosen: dict
    result: SequenceResult  # the held-out sequence under the chosen setting
    default: SequenceResult  # the held-out sequence under the pipeline as given


def leave_one_out(seqs: list[tuple[EvalSequence, SequenceMaps]], cfg, grid: dict[str, list],
                  on_replay=None) -> tuple[list[HeldOut], dict]:
    """Every grid point replayed on every sequence once (no threshold sweep), then for each
    sequence the point best on the others.  Returns the held-out rows and the point best on all."""
    points = grid_points(grid)
    table: list[list[SequenceResult]] = []  # [point][sequence]
    for p in points:
        pcfg = override(cfg, **p)
        row = []
        for seq, maps in seqs:
            row.append(evaluate_sequence(seq, maps, pcfg, thresholds=()))
            if on_replay:
                on_replay()
        table.append(row)
    defaults = [evaluate_sequence(seq, maps, cfg, thresholds=()) for seq, maps in seqs]

    def best(indices: list[int]) -> int:
        return max(range(len(points)), key=lambda i: objective(pooled([table[i][j] for j in indices]), len(indices)))

    rows = []
    for j, (seq, _) in enumerate(seqs):
        i = best([k for k in range(len(seqs)) if k != j])
        rows.append(HeldOut(seq.name, points[i], table[i][j], defaults[j]))
    return rows, points[best(list(range(len(seqs))))]
