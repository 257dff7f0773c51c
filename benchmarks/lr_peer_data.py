"""Write default_credit in the FATE / SecretFlow harness layout, with Veil's benchmark split.

    python benchmarks/lr_peer_data.py /tmp/lr-peers/fate/data default_credit

writes ``{name}_{train,test}_{guest,host}.csv`` (guest: id, y, x0..x12; host: id, x0..x9),
70/30 stratified with seed 42, exactly the rows ``benchmarks/vertical_lr.py`` uses.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vertical_lr import load_split


def main() -> None:
    out, name = Path(sys.argv[1]), sys.argv[2]
    out.mkdir(parents=True, exist_ok=True)
    g, h, tr, te = load_split()
    for split, rows in (("train", tr), ("test", te)):
        g.iloc[rows].to_csv(out / f"{name}_{split}_guest.csv", index=False, float_format="%.6f")
        h.iloc[rows].to_csv(out / f"{name}_{split}_host.csv", index=False, float_format="%.6f")
        print(split, len(rows))


if __name__ == "__main__":
    main()
