"""Write default_credit in the FATE / SecretFlow harness layout, with Veil's benchmark split.

    python benchmarks/lr_peer_data.py /tmp/peers/fate/data default_credit [DATA_DIR]

writes ``{name}_{train,test}_{guest,host}.csv`` (guest: id, y, x0..x12; host: id, x0..x9),
70/30 stratified with seed 42, exactly the rows ``benchmarks/vertical_lr.py`` uses.
The source tables are read from DATA_DIR (default ../shared/data beside the repository).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vertical_lr import load_split


def main() -> None:
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    out, name = Path(sys.argv[1]), sys.argv[2]
    g, h, tr, te = load_split(sys.argv[3] if len(sys.argv) == 4 else None)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", tr), ("test", te)):
        g.iloc[rows].to_csv(out / f"{name}_{split}_guest.csv", index=False, float_format="%.6f")
        h.iloc[rows].to_csv(out / f"{name}_{split}_host.csv", index=False, float_format="%.6f")
        print(split, len(rows))


if __name__ == "__main__":
    main()
