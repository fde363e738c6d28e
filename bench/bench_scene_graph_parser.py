"""Scene-graph parser accuracy: object, attribute and relation F1 on the hand-written gold captions.

The gold set (``tests/data/scene_graph_gold.jsonl``, COCO / Visual Genome style captions with graphs written from
the captions' meaning) is scored as a whole and per ``split``: "development" captions were written before the
parser's rules and its errors on them guided the rules; "held-out" captions were written afterwards and never
tuned on, so their F1 is the honest estimate. Scores come from ``vlpretrain.data.scene_graph.scene_graph_f1``;
``--errors`` lists the captions whose graph differs.

Usage: ``python bench/bench_scene_graph_parser.py [--gold tests/data/scene_graph_gold.jsonl] [--errors]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlpretrain.data.scene_graph import parse_caption, scene_graph_f1

GOLD = Path(__file__).resolve().parents[1] / "tests" / "data" / "scene_graph_gold.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold", type=Path, default=GOLD)
    parser.add_argument("--errors", action="store_true", help="print the captions whose parse differs")
    args = parser.parse_args()
    records = [json.loads(line) for line in args.gold.read_text().splitlines() if line.strip()]
    parse = parse_caption
    splits = {"all": records}
    for record in records:
        splits.setdefault(record.get("split", "all"), []).append(record)
    for name, part in splits.items():
        scores = scene_graph_f1(part, parse)
        print(f"rule parser, {name}: {scores['captions']} captions ({args.gold.name})")
        print(f"{'':10} {'precision':>9} {'recall':>9} {'F1':>9}")
        for kind in ("object", "attribute", "relation"):
            figures = (scores[f"{kind}_{measure}"] for measure in ("precision", "recall", "f1"))
            print(f"{kind:10}" + "".join(f" {value:9.3f}" for value in figures))
    if args.errors:
        for record in records:
            graph = parse(record["caption"])
            got = graph.as_text() if graph is not None else {"objects": [], "attributes": [], "relations": []}
            got = {key: [list(item) if isinstance(item, tuple) else item for item in got[key]] for key in got}
            want = {key: record[key] for key in ("objects", "attributes", "relations")}
            if any(sorted(map(str, got[key])) != sorted(map(str, want[key])) for key in want):
                print(f"\n{record['caption']}\n  got  {got}\n  want {want}")


if __name__ == "__main__":
    main()
