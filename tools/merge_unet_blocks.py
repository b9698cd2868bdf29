"""Merge two checkpoints block by block: merged = A·(1−α) + B·α, α chosen per UNet block.

    python tools/merge_unet_blocks.py A.safetensors B.ckpt \
        --input_blocks "0:0.5, 1:0.5, 3:0.6" --middle_blocks "0:0.5, 1:0.5, 2:0.6" \
        --output_blocks "0:0.5, 11:0.5" --out "0:0.5, 2:0.3" --time_embed "0:0.5, 2:0.3" \
        --base_alpha 0.5 --dump_path merged.safetensors

Each value is the share of the SECOND model. UNet keys no flag names use --base_alpha (default 0);
text-encoder and VAE keys stay the first model's unless --text_encoder_alpha / --vae_alpha are
given. The output format follows --dump_path's extension (default <A>_<B>.safetensors beside A).
The merge streams tensor by tensor (see modules/merge/engine.py), so it needs little memory.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modules.merge import engine  # noqa: E402
from modules.merge.errors import MergeError  # noqa: E402

METHODS = {"weighted_sum": "Weighted sum", "add_difference": "Add difference"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Merge two Stable Diffusion checkpoints with a ratio per UNet block.")
    parser.add_argument("model_0", help="first model A (.safetensors or .ckpt)")
    parser.add_argument("model_1", help="second model B (.safetensors or .ckpt)")
    parser.add_argument("--base_alpha", type=float, default=0.0, help="alpha of UNet keys no block flag names (default 0)")
    for flag, what in (("input_blocks", "input_blocks.N"), ("middle_blocks", "middle_block.N"),
                       ("output_blocks", "output_blocks.N"), ("out", "out.N (final norm and conv)"),
                       ("time_embed", "time_embed.N")):
        parser.add_argument(f"--{flag}", default=None, help=f'"index:alpha, ..." for {what}')
    parser.add_argument("--label_emb", type=float, default=None, help="alpha of label_emb (SDXL)")
    parser.add_argument("--text_encoder_alpha", type=float, default=None, help="alpha of the text encoder(s) (default: keep A's)")
    parser.add_argument("--vae_alpha", type=float, default=None, help="alpha of the VAE (default: keep A's)")
    parser.add_argument("--dump_path", default=None, help="output file; .safetensors or .ckpt (default <A>_<B>.safetensors beside A)")
    parser.add_argument("--half", action="store_true", help="save every floating tensor as float16")
    parser.add_argument("--method", choices=sorted(METHODS), default="weighted_sum",
                        help="weighted_sum: A·(1−α)+B·α; add_difference: A+(B−C)·α (needs --model3)")
    parser.add_argument("--model3", default=None, help="third model C for add_difference")
    parser.add_argument("--discard_weights", default="", help="regex: drop keys that match")
    parser.add_argument("--no_metadata", action="store_true", help="write no merge recipe metadata")
    parser.add_argument("--overwrite", action="store_true", help="replace --dump_path if it exists")
    return parser


class ProgressBar:
    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.stage = None
        self.last = 0.0

    def __call__(self, text: str, done: int, total: int) -> None:
        now = time.monotonic()
        if text != self.stage:
            if self.stage is not None:
                self.stream.write("\n")
            self.stage = text
        elif total and done < total and now - self.last < 0.2:
            return
        self.last = now
        if total:
            width = 30
            filled = int(width * done / total)
            self.stream.write(f"\r{text}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        else:
            self.stream.write(f"\r{text}...")
        self.stream.flush()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    method = METHODS[args.method]
    if method == "Add difference" and not args.model3:
        print("error: --method add_difference needs --model3 C", file=sys.stderr)
        return 2
    if args.model3 and method != "Add difference":
        print("error: --model3 is only used with --method add_difference", file=sys.stderr)
        return 2
    dump_path = args.dump_path
    if dump_path is None:
        stem = lambda p: os.path.splitext(os.path.basename(p))[0]  # noqa: E731
        dump_path = os.path.join(os.path.dirname(os.path.abspath(args.model_0)),
                                 f"{stem(args.model_0)}_{stem(args.model_1)}.safetensors")
    block_alphas = {"base_alpha": args.base_alpha, "input_blocks": args.input_blocks,
                    "middle_blocks": args.middle_blocks, "output_blocks": args.output_blocks,
                    "out": args.out, "time_embed": args.time_embed, "label_emb": args.label_emb}
    req = engine.MergeRequest(
        primary=args.model_0, secondary=args.model_1, tertiary=args.model3, interp_method=method,
        multiplier=args.base_alpha, block_alphas=block_alphas, text_encoder_alpha=args.text_encoder_alpha,
        vae_alpha=args.vae_alpha, save_as_half=args.half, output_path=dump_path,
        discard_weights=args.discard_weights, save_metadata=not args.no_metadata, overwrite=args.overwrite)
    bar = ProgressBar()
    started = time.time()
    try:
        result = engine.merge(req, progress=bar)
    except MergeError as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; no output file was written", file=sys.stderr)
        return 130
    print(f"\nSaved {result.filename} (sha256 {result.sha256}) in {time.time() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
