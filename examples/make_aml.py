"""Make the AML example's tables with the synthetic generator (veil.data.aml_synth).

Three banks of different kinds (retail, business, international) and a pooled test
set, one row per account (features and the ``is_laundering`` label), written to
examples/data/aml_*.csv.gz. Deterministic:
    python examples/make_aml.py [--seed 0]
"""

import argparse
from pathlib import Path

from veil.data.aml_synth import DEFAULT_BANKS, TEST_BANK, make_bank

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "data")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for profile in (*DEFAULT_BANKS, TEST_BANK):
        table = make_bank(profile, args.seed)
        path = args.out / f"aml_{profile.name}.csv.gz"
        gz = {"method": "gzip", "mtime": 0}
        table.to_csv(path, index=False, float_format="%.6g", compression=gz)
        print(f"{path}: {len(table)} accounts, {int(table['is_laundering'].sum())} laundering")


if __name__ == "__main__":
    main()
