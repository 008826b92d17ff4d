"""Fig. 8: per game, the histogram of K/N on the pre-training frames, mr* and the adopted mr marked."""

from __future__ import annotations

from pathlib import Path

from spirl.common.cli import base_parser, setup_logging
from spirl.common.io import read_json
from spirl.params import load_params, resolve_mr
from spirl.saliency.figures import plot_k_histograms


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--in-mr", type=Path, nargs="+", required=True, help="estimate_mr outputs, one per game")
    parser.add_argument("--out-fig8", type=Path, required=True)
    args = parser.parse_args()
    log = setup_logging("fig8", args.log)
    params = load_params(args.params)
    per_game = {}
    for path in args.in_mr:
        result = read_json(path)["result"]
        game = result["game"]
        per_game[game] = {**result, "mr_adopted": resolve_mr(params.saliency, game, result["mr_star"])}
        log.info("%s: mr* %.2f, adopted %.2f", game, result["mr_star"], per_game[game]["mr_adopted"])
    plot_k_histograms(per_game, args.out_fig8)


if __name__ == "__main__":
    main()
