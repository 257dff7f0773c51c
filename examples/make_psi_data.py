"""Make the PSI demo's two tables from the packaged default_credit vertical split.

The bank keeps 27,000 of the 30,000 customers, the partner 28,000 (a different
2,000 dropped, rows shuffled, 100 rows duplicated), so the intersection is a
strict subset of both and the rows arrive in different orders. Deterministic:
    python examples/make_psi_data.py
"""

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "src" / "veil" / "data"


def main() -> None:
    rng = np.random.default_rng(20261127)
    bank = pd.read_csv(DATA / "default_credit_hetero_guest.csv", dtype={"id": str})
    partner = pd.read_csv(DATA / "default_credit_hetero_host.csv", dtype={"id": str})
    ids = bank["id"].to_numpy()
    drop = rng.permutation(len(ids))
    bank_drop, partner_drop = set(ids[drop[:3000]]), set(ids[drop[3000:5000]])
    bank = bank[~bank["id"].isin(bank_drop)]
    partner = partner[~partner["id"].isin(partner_drop)]
    partner = pd.concat([partner, partner.sample(100, random_state=1)])
    partner = partner.sample(frac=1.0, random_state=2)
    bank.to_csv(HERE / "data" / "psi_bank.csv", index=False)
    partner.to_csv(HERE / "data" / "psi_partner.csv", index=False)
    print(f"bank {len(bank)} rows, partner {len(partner)} rows, shared {30000 - 5000} ids")


if __name__ == "__main__":
    main()
