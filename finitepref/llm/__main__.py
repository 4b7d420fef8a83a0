"""Command line: ``python -m finitepref.llm {train,evaluate,configs} ...``.

Examples::

    python -m finitepref.llm train --config tiny/distill --output-dir runs/tiny-distill
    accelerate launch -m finitepref.llm train --config tldr/pythia-1.4b/distill --output-dir runs/distill
    python -m finitepref.llm train --config tldr/pythia-2.8b/reverse_kl --dry-run
    python -m finitepref.llm train --config tiny/dpo --set train.lr=1e-4 --algorithm.beta 0.1
    python -m finitepref.llm evaluate --policy runs/distill --reference runs/sft --judge reward-model

Every config field can be overridden with ``--set section.field=value`` or ``--section.field value``;
shortcuts: ``--lr``, ``--seed``, ``--batch-size``, ``--micro-batch-size``, ``--max-steps``,
``--output-dir``, ``--resume``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

SHORTCUTS = {
    "lr": "train.lr", "seed": "train.seed", "batch_size": "train.batch_size",
    "micro_batch_size": "train.micro_batch_size", "max_steps": "train.max_steps",
}


def _split_dotted(extra: list[str]) -> list[str]:
    """``--a.b v`` / ``--a.b=v`` -> ``a.b=v``."""
    out, i = [], 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or "." not in tok.split("=", 1)[0]:
            raise SystemExit(f"unrecognised argument {tok!r} (use --set section.field=value)")
        key = tok[2:]
        if "=" in key:
            out.append(key)
            i += 1
        else:
            if i + 1 >= len(extra):
                raise SystemExit(f"{tok} needs a value")
            out.append(f"{key}={extra[i + 1]}")
            i += 2
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m finitepref.llm", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="run one stage (SFT, RM, DPO, PMLE, distill, REBEL, RLHF, reverse KL)")
    tr.add_argument("--config", required=False, help="shipped name (tiny/distill) or YAML path")
    tr.add_argument("--output-dir", help="overrides output_dir")
    tr.add_argument("--dry-run", action="store_true", help="resolve, validate, print config and memory estimate")
    tr.add_argument("--resume", action="store_true", help="resume from the newest complete checkpoint in output_dir")
    tr.add_argument("--overwrite", action="store_true", help="replace a finished run in output_dir")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    tr.add_argument("--help-config", action="store_true", help="list every config field with its meaning")
    for k in SHORTCUTS:
        tr.add_argument(f"--{k.replace('_', '-')}", dest=k, default=None, help=f"= --set {SHORTCUTS[k]}=...")
    ev = sub.add_parser("evaluate", help="win-rate, RM score and KL(pi||pi0) of a policy (Table 2)")
    ev.add_argument("--policy", required=True, help="run directory, model directory or hub id")
    ev.add_argument("--reference", required=True, help="the reference pi_0 (e.g. the SFT run)")
    ev.add_argument("--judge", default=None, choices=["reward-model", "openai"])
    ev.add_argument("--config", default=None, help="config for data/reward/generation; default: the policy "
                    "run's config.yaml")
    ev.add_argument("--reward-model", default=None, help="overrides reward.model")
    ev.add_argument("--num-samples", type=int, default=None, help="overrides eval.num_samples")
    ev.add_argument("--output", default=None, help="summary CSV path (default <policy>/eval.csv)")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sub.add_parser("configs", help="list shipped configs")
    return ap


def _train_command(ap: argparse.ArgumentParser, args, overrides: list[str]) -> int:
    from .config import field_docs, load_config, to_dict

    if args.help_config:
        for key, doc in field_docs().items():
            print(f"{key:34s} {doc}")
        return 0
    if not args.config:
        ap.error("train needs --config")
    for key, path in SHORTCUTS.items():
        if getattr(args, key) is not None:
            overrides.append(f"{path}={getattr(args, key)}")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    if args.resume:
        overrides.append("train.resume=true")
    if args.overwrite:
        overrides.append("train.overwrite=true")
    cfg = load_config(args.config, overrides)
    if args.dry_run:
        from .memory import estimate, sharding_table

        world = int(os.environ.get("WORLD_SIZE", "1"))
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        print("memory estimate:")
        print(json.dumps(estimate(cfg, world), indent=2))
        print("per-GPU memory by sharding (configs/accelerate; the paper's 4 x A100 40 GB):")
        print(json.dumps(sharding_table(cfg), indent=2))
        return 0
    from accelerate import PartialState

    from .train import train

    summary = train(cfg)
    state = PartialState()  # the one train() started
    if state.is_main_process:
        print(json.dumps(dict(summary), default=float))
    # The launcher's process group, torn down while the interpreter is whole (torch.distributed's advice); left
    # to interpreter exit, gloo's threads may be destroyed last and abort the process (finitepref.distributed).
    state.destroy_process_group()
    return 0


def _evaluate_command(ap: argparse.ArgumentParser, args, overrides: list[str]) -> int:
    from .config import load_config
    from .evaluate import evaluate

    for flag, path in (("--policy", args.policy), ("--reference", args.reference)):
        if not _is_model_ref(path):
            ap.error(f"{flag} {path!r}: the path does not exist (expected a run directory, a model directory, "
                     "a hub id or tiny:<arch>)")
    cfg_path = args.config
    if cfg_path is None and (Path(args.policy) / "config.yaml").is_file():
        cfg_path = str(Path(args.policy) / "config.yaml")
    if args.reward_model:
        overrides.append(f"reward.model={args.reward_model}")
    if args.num_samples is not None:
        overrides.append(f"eval.num_samples={args.num_samples}")
    cfg = load_config(cfg_path, overrides)
    summary = evaluate(cfg, args.policy, args.reference, judge=args.judge or cfg.eval.judge, out_csv=args.output)
    print(json.dumps(summary, default=float))
    return 0


def _is_model_ref(text: str) -> bool:
    """A local path that exists, ``tiny:...``, or a hub id ``owner/name`` that is not a local-looking path."""
    if text.startswith("tiny:") or Path(text).exists():
        return True
    looks_local = text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
    return not looks_local


def main(argv: list[str] | None = None) -> int:
    from .config import CONFIG_DIR

    ap = _parser()
    args, extra = ap.parse_known_args(argv)
    overrides = list(getattr(args, "set", []) or []) + _split_dotted(extra)
    if args.command == "configs":
        for path in sorted(CONFIG_DIR.rglob("*.yaml")):
            print(path.relative_to(CONFIG_DIR).with_suffix(""))
        return 0
    from .errors import ConfigError

    try:
        if args.command == "train":
            return _train_command(ap, args, overrides)
        if args.command == "evaluate":
            return _evaluate_command(ap, args, overrides)
    except ConfigError as e:  # one line, exit status 2, no traceback
        ap.error(str(e))
    return 1


if __name__ == "__main__":
    sys.exit(main())
