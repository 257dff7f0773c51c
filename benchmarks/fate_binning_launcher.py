"""FATE 2.2 hetero feature binning (quantile, WOE/IV, Paillier) on default_credit: the peer
for benchmarks/credit_binning.py. Run with FATE's venv (see shared/peers/README.md):

    /tmp/fate-venv/bin/python benchmarks/fate_binning_launcher.py \
        --parties guest:9999 host:10000 --log_level WARNING --data_dir "$(mktemp -d)" \
        --n_bins 10 --key_length 2048 --out fate_binning.json [--csv_dir DIR]

``--csv_dir`` holds default_credit_hetero_{guest,host}.csv (default: ../shared/data
beside the repository, or $VEIL_SHARED/data); ``--data_dir`` is FATE's own work folder.
"""

# ruff: noqa
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fate.arch.launchers.argparser import HfArgumentParser
from fate.arch.launchers.multiprocess_launcher import launch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import default_data_dir


@dataclass
class BinArgs:
    n_bins: int = field(default=10)
    key_length: int = field(default=2048)
    out: str = field(default="fate_binning.json")
    csv_dir: str = field(default=str(default_data_dir()))
    rows: int = field(default=0)
    # "bucket" = equal width. FATE 2.2's "quantile" fails on this data: a discrete column
    # gets duplicate split points, its bin count is the number of distinct ones, but
    # bucketize still yields indices past it ("index 122 is out of bounds").
    method: str = field(default="bucket")


def run(ctx):
    import pandas as pd
    from fate.arch import dataframe
    from fate.ml.feature_binning import HeteroBinningModuleGuest, HeteroBinningModuleHost

    args, _ = HfArgumentParser(BinArgs).parse_args_into_dataclasses(return_remaining_strings=True)
    ctx.cipher.set_phe(ctx.device, {"kind": "paillier", "key_length": args.key_length})
    side = "guest" if ctx.is_on_guest else "host"
    path = f"{args.csv_dir}/default_credit_hetero_{side}.csv"
    if args.rows:
        tmp = os.path.join(tempfile.mkdtemp(prefix="fate_binning_"), f"{side}_{args.rows}.csv")
        pd.read_csv(path, nrows=args.rows).to_csv(tmp, index=False)
        path = tmp
    kw = dict(sample_id_name=None, match_id_name="id", delimiter=",", dtype="float32")
    if ctx.is_on_guest:
        kw.update(label_name="y", label_type="int32")
    data = dataframe.CSVReader(**kw).to_frame(ctx, path)
    cols = data.schema.columns.to_list()
    cls = HeteroBinningModuleGuest if ctx.is_on_guest else HeteroBinningModuleHost
    t0 = time.time()
    binning = cls(args.method, args.n_bins, None, cols, None, [], False, 1e-6, 0.5)
    sub = ctx.sub_ctx("train")
    binning.fit(sub, data)
    binned = binning._bin_obj.bucketize_data(data)
    binning.compute_metrics(sub, binned)
    secs = time.time() - t0
    if ctx.is_on_guest:
        model = binning.get_model()
        summary = model["data"].get("metrics_summary", {})
        host_iv = model["data"].get("host_metrics_summary", {})
        out = {
            "fit_seconds": secs,
            "n_bins": args.n_bins,
            "key_length": args.key_length,
            "guest_iv": summary.get("iv"),
            "host_iv": host_iv,
        }
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1, default=str)
        print("RESULT", json.dumps(out, default=str))
    else:
        print(f"[host] binning {secs:.1f}s")


if __name__ == "__main__":
    launch(run, extra_args_desc=[BinArgs])
