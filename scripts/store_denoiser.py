"""Re-store a PathUp model folder's denoiser weights in another dtype (float32, float16 or bfloat16).

    python scripts/store_denoiser.py MODEL bfloat16

Where the model runs in bfloat16 (``--dtype auto`` on a CPU that computes it) a bfloat16 file computes
the same bits as the float32 one at half its size; the default model's denoiser is stored so since
version 4.10 (docs/model_card.md). The folder is rewritten under a temporary name, then renamed, and
``pathup.json`` "training" records "denoiser_storage" (``napari_pathup.models.storage``).
"""

from __future__ import annotations

import argparse
import json

from napari_pathup.models.storage import store_denoiser
from napari_pathup.training import DENOISER_STORAGES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the PathUp model folder whose denoiser is re-stored (in place)")
    parser.add_argument("storage", choices=DENOISER_STORAGES, help="the dtype its weights are written in")
    args = parser.parse_args()
    print(json.dumps(store_denoiser(args.model, args.storage), indent=2))


if __name__ == "__main__":
    main()
