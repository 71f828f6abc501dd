"""`visionssm` command line: train | eval | predict | models | bench | profile.

User errors print one line, ``visionssm: error: ...``, and exit 2; tracebacks are for bugs.
Under torchrun: ``torchrun --nproc_per_node N -m visionssm.cli train ...``.
"""

from __future__ import annotations

import argparse
import os
import sys

from visionssm import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + error; we keep to one line
        self.exit(2, f"visionssm: error: {message} (see `{self.prog} --help`)\n")


def _train(args) -> int:
    from visionssm.train.config import from_args
    from visionssm.train.loop import config_for_resume, train

    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "resume", "overwrite")}
    cfg = config_for_resume(args.resume, given) if args.resume else from_args(given)
    train(cfg, resume=args.resume, overwrite=args.overwrite)
    return 0


def _eval(args) -> int:
    from visionssm.train.evaluate import run_eval

    r = run_eval(args.checkpoint, data=args.data, model_name=args.model, batch_size=args.batch_size,
                 device=args.device, output=args.output, limit_batches=args.limit_batches)
    print(f"{args.checkpoint} on {r['where']}: top1 {r['top1']:.2f}% top5 {r['top5']:.2f}% "
          f"loss {r['loss']:.4f} ({r['count']} images); confusion matrix: {r['confusion_png']}")
    return 0


def _predict(args) -> int:
    from visionssm.train.evaluate import run_predict

    for image, top in run_predict(args.checkpoint, args.images, topk=args.topk, model_name=args.model,
                                  device=args.device):
        print(f"{image}: " + ", ".join(f"{label} {p:.4f}" for label, p in top))
    return 0


def _models(args) -> int:
    from visionssm.train.summary import describe, table, visionssm_model_names

    names = visionssm_model_names(args.filter)
    if not names:
        print("no visionssm models registered" + (f" matching {args.filter!r}" if args.filter else ""))
        return 0
    print(table([describe(n) for n in names]))
    print("\nFLOPs: one image at the default resolution; FlopCounterMode (matmul/conv, 2 per MAC) plus "
          "selective scans at 9*B*L*D*N (+B*D*L each for D and z); other elementwise ops not counted.")
    return 0


def _bench(args) -> int:
    from visionssm.bench.cli import run_bench

    return run_bench(args)


def _profile(args) -> int:
    from visionssm.bench.cli import run_profile

    return run_profile(args)


def build_parser() -> argparse.ArgumentParser:
    from visionssm.train.config import add_arguments

    parser = _Parser(prog="visionssm", description="Vision state-space models: train, evaluate, inspect.")
    parser.add_argument("--version", action="version", version=f"visionssm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a model (default: a small Vim on sklearn digits, CPU-friendly)")
    add_arguments(p)
    p.add_argument("--resume", metavar="DIR", default=None, help="continue the run in DIR where it stopped")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --output")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="top-1/top-5 and confusion.png of a checkpoint")
    p.add_argument("--checkpoint", required=True, help=".safetensors from a run (or .pt/.pth state dict)")
    p.add_argument("--data", default=None,
                   help="ImageFolder root (its val/) or one split folder; default: the run's digits split")
    p.add_argument("--model", default=None, help="model name (default: from the checkpoint)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--output", default=None, help="folder for confusion.png (default: the checkpoint's)")
    p.add_argument("--limit-batches", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_eval)

    p = sub.add_parser("predict", help="top-k labels with probabilities for images")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--model", default=None, help="model name (default: from the checkpoint)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_predict)

    p = sub.add_parser("models", help="registered visionssm models: params, FLOPs, family, paper")
    p.add_argument("--filter", default="", help="substring of the model name")
    p.set_defaults(func=_models)
    from visionssm.bench.cli import add_bench_arguments, add_profile_arguments

    p = sub.add_parser("bench", help="img/s and peak memory of our and timm models over resolutions (GPU or CPU)")
    add_bench_arguments(p)
    p.set_defaults(func=_bench)

    p = sub.add_parser("profile", help="params, FLOPs (scans included) and per-block time of one model")
    add_profile_arguments(p)
    p.set_defaults(func=_profile)
    return parser


def main(argv: list[str] | None = None) -> int:
    from visionssm.train.errors import UserError, one_line

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank hits it; say it once
            print(f"visionssm: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("visionssm: interrupted; the last saved state.pt is intact (--resume DIR)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
