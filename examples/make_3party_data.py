"""Make the three-party credit demo's tables from the packaged default_credit split.

bank   = the guest table (label y and 13 repayment columns);
bureau = the host table's columns x0..x4; telco = the host table's columns x5..x9.
Each party misses a different 1,500 of the 30,000 customers (so the intersection of
all three, 25,500 ids, is a strict subset of each pair's), rows are shuffled, and
the bureau has 50 duplicated rows. Deterministic:
    python examples/make_3party_data.py
"""

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "src" / "veil" / "data"
OUT = HERE / "data"


def main() -> None:
    rng = np.random.default_rng(20261203)
    guest = pd.read_csv(DATA / "default_credit_hetero_guest.csv", dtype={"id": str})
    host = pd.read_csv(DATA / "default_credit_hetero_host.csv", dtype={"id": str})
    tables = {
        "bank": guest,
        "bureau": host[["id", "x0", "x1", "x2", "x3", "x4"]],
        "telco": host[["id", "x5", "x6", "x7", "x8", "x9"]],
    }
    drop = rng.permutation(guest["id"].to_numpy())
    for k, (name, table) in enumerate(tables.items()):
        gone = set(drop[1500 * k : 1500 * (k + 1)])
        t = table[~table["id"].isin(gone)]
        if name == "bureau":
            t = pd.concat([t, t.sample(50, random_state=3)])
        t = t.sample(frac=1.0, random_state=10 + k)
        t.to_csv(OUT / f"3p_{name}.csv", index=False)
        print(f"{name}: {len(t)} rows, columns {list(t.columns)[1:]}")
    print(f"shared by all three: {30000 - 4500} ids")


if __name__ == "__main__":
    main()
