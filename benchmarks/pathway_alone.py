"""Copy a world model with the transformer's state head zeroed, so that its state pathway alone
predicts the state change (the "pathway alone" rows of docs/world_model.md's table of the `mlp` preset).

    python benchmarks/pathway_alone.py runs/reacher-lite-c3 runs/reacher-lite-c3-pathonly
"""

from __future__ import annotations

import argparse

import torch

from worldsim.model.world_model import WorldModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="world-model checkpoint with a state pathway and a state head")
    p.add_argument("dst", help="output checkpoint directory")
    args = p.parse_args()
    wm = WorldModel.from_pretrained(args.src)
    if wm.pathway is None or wm.dynamics.state_head is None:
        raise SystemExit(f"{args.src}: needs both a state pathway and a state head (WorldModelConfig.pathway, "
                         f"DynamicsConfig.state_head)")
    with torch.no_grad():
        wm.dynamics.state_head.weight.zero_()
        wm.dynamics.state_head.bias.zero_()
    wm.save(args.dst, extra={"from": args.src, "note": "state head zeroed: the pathway alone predicts the state"})
    print(f"wrote {args.dst}")


if __name__ == "__main__":
    main()
