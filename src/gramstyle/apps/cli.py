"""The command line, built from `Settings`: every flag's default and help come from the config's fields.

    gramstyle transfer CONTENT STYLE [STYLE ...] -o OUT     Fig. 2: style transfer
    gramstyle content IMAGE --layer conv4_1 -o OUT          Fig. 1, top row: content reconstruction
    gramstyle texture STYLE --layers conv1_1,conv2_1 -o OUT Fig. 1, bottom row: style reconstruction
    gramstyle demo -o OUT                                   transfer on the bundled images
    gramstyle layers                                        VGG-19's layers
    gramstyle batch CONTENT... --style STYLE... -o OUTDIR   many transfers, resumable, local or on Ray

A user's mistake gets one line on stderr and exit status 2; nothing is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .. import checkpoint as checkpoints
from .. import config, devices, outputs
from .. import images as imageio
from ..assets import DEMO_CONTENT, DEMO_STYLE
from ..config import Settings
from ..errors import GramstyleError, SettingsError, literal, render
from ..events import Progress
from ..layers import MIN_SIDE, VGG19, canonical_layer
from ..result import Result
from ..tasks import reconstruct_content, synthesize_texture, transfer
from . import entry
from . import video as video_cli
from .batch import cli as batch_cli
from .web import cli as web_cli

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# --- flag value parsers: each raises ArgumentTypeError with a one-line reason ----------------------------------

def _number(kind: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


def _layer_name(text: str) -> str:
    """One layer name, e.g. conv4_1 (relu4_1 is the same layer)."""
    try:
        return canonical_layer(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _layer_names(text: str) -> tuple[str, ...]:
    """'conv1_1,conv2_1': names only; the texture's layers are always weighted equally."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected at least one layer, e.g. conv1_1,conv2_1")
    if any(":" in item for item in items):
        raise argparse.ArgumentTypeError(f"expected layer names without weights (they are weighted equally), "
                                         f"got {text!r}")
    return tuple(_layer_name(item) for item in items)


def flag(name: str) -> str:
    """The CLI's name for a setting: style_scale -> --style-scale."""
    return "--" + name.replace("_", "-")


def _field_type(name: str) -> Callable[[str], Any]:
    """The flag's parser: `config.parse_field`, its error as argparse's one line."""

    def parse(text: str) -> Any:
        try:
            value = config.parse_field(name, text)
        except SettingsError as exc:
            raise argparse.ArgumentTypeError(exc.render(flag).removeprefix(flag(name) + ": ")) from None
        if name == "output_size" and value is not None and min(value) < MIN_SIDE:
            raise argparse.ArgumentTypeError(f"each side must be at least {MIN_SIDE} px, got {text!r}")
        return value

    return parse


# Which Settings fields each subcommand exposes (the others keep their task defaults).
_NETWORK = ("weights", "preprocessing", "pooling")
_RUN = ("init", "optimizer", "steps", "lr", "history_size", "lbfgs_scaling", "seed", "time_limit", "device",
        "precision", "convolution", "tile", "max_pixels")
_FIELDS = {
    "transfer": ("alpha", "beta", "content_layers", "style_layers", "style_blend", "preserve_color", "color_match",
                 "content_mask", "style_mask",
                 "tv_weight", *_NETWORK,
                 "size", "style_size", "style_scale", "scales", "scale_steps", *_RUN),
    "content": ("tv_weight", *_NETWORK, "size", *_RUN),
    "texture": ("content_mask", "style_mask", "tv_weight", *_NETWORK, "size", "output_size", "scales",
                "scale_steps", *_RUN),
}
_FIELDS["demo"] = _FIELDS["transfer"]


def _add_settings(parser: argparse.ArgumentParser, task: str) -> None:
    defaults = Settings.for_task(task)
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    group = parser.add_argument_group("settings")
    for name in _FIELDS[task]:
        field = fields[name]
        default = getattr(defaults, name)
        shown = _show(default)
        help_text = field.metadata.get("help", "") + (f" [default: {literal(shown)}]" if shown else "")
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": render(help_text, flag),
                                  "type": _field_type(name)}
        if config.choices(name) is not None:
            kwargs["choices"] = config.choices(name)
        group.add_argument(flag(name), **kwargs)


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return ",".join(f"{layer}:{weight:g}" for layer, weight in value)
    return str(value)


def _add_outputs(parser: argparse.ArgumentParser, default_output: str | None = None) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("-o", "--output", required=default_output is None, default=default_output,
                       help="output image (.png, .jpg, .webp, .tif); its run record goes to OUTPUT.json"
                       + (f" [default: {default_output}]" if default_output else ""))
    group.add_argument("--log", metavar="CSV", help="write the losses of every step to this CSV file")
    group.add_argument("--save-every", metavar="N", type=_number(int, "an integer"),
                       help="also save the image every N steps, as OUTPUT_stepNNNNN.EXT")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    group.add_argument("--checkpoint-every", metavar="N", type=_number(int, "an integer"),
                       help="write the run's state to OUTPUT.ckpt every N steps (and at the end, and on Ctrl-C)")
    group.add_argument("--checkpoint", metavar="PATH", help="the checkpoint's file [default: OUTPUT.ckpt]")
    group.add_argument("--resume", metavar="CKPT", help="continue the run of this checkpoint exactly (same "
                       "settings and inputs; --steps may be larger)")
    group.add_argument("--more-steps", metavar="N", type=_number(int, "an integer"),
                       help="go on N more steps from the checkpoint (--resume, or OUTPUT.ckpt) of a finished run")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gramstyle", description="Neural style transfer after Gatys, Ecker & Bethge (2015).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("transfer", help="paint a photo in the style of one or more artworks (Fig. 2)")
    p.add_argument("content", help="content image (the photo)")
    p.add_argument("style", nargs="+", help="style image(s); several are blended (--style-blend)")
    p.add_argument("--ratio", type=_number(float, "a number"), metavar="ALPHA/BETA",
                   help="content-to-style ratio alpha/beta (sets beta = alpha / ratio); the paper uses 1e-3, 1e-4")
    _add_settings(p, "transfer")
    _add_outputs(p)

    p = sub.add_parser("demo", help="transfer on the bundled images (Tübingen, The Starry Night), in minutes")
    p.add_argument("--ratio", type=_number(float, "a number"), metavar="ALPHA/BETA",
                   help="content-to-style ratio alpha/beta (sets beta = alpha / ratio)")
    _add_settings(p, "demo")
    _add_outputs(p, default_output="stylized.png")

    p = sub.add_parser("content", help="reconstruct an image from one layer's response (Fig. 1, top row)")
    p.add_argument("image", help="the image to reconstruct")
    p.add_argument("--layer", default="conv4_1", type=_layer_name,
                   help="the layer whose response is matched [default: conv4_1]")
    _add_settings(p, "content")
    _add_outputs(p)

    p = sub.add_parser("texture", help="synthesize a texture from Gram matrices (Fig. 1, bottom row)")
    p.add_argument("style", nargs="+", help="the style image(s) (texture source; several are blended, or mapped to "
                   "regions with --content-mask/--style-mask)")
    p.add_argument("--layers", default=("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"), type=_layer_names,
                   help="style layers, equally weighted [default: conv1_1,conv2_1,conv3_1,conv4_1,conv5_1]")
    _add_settings(p, "texture")
    _add_outputs(p)

    p = sub.add_parser("figures", help="regenerate the paper's Figures 1-3 into a folder (resumable)")
    p.add_argument("-o", "--output", required=True, metavar="FOLDER",
                   help="folder for panels/, fig1.png, fig2.png, fig3.png and results.json")
    p.add_argument("--size", type=_number(int, "an integer"), default=512,
                   help="longest side of every panel [default: 512, the paper's]; 128 for a quick look")
    p.add_argument("--steps", type=_number(int, "an integer"), default=500, help="steps per panel [default: 500]")
    p.add_argument("--only", action="append", choices=("fig1", "fig2", "fig3"),
                   help="make only this figure (repeatable) [default: all]")
    p.add_argument("--picasso", metavar="IMAGE",
                   help="Picasso's Femme nue assise for Fig. 2 E (not bundled: still under copyright)")
    p.add_argument("--ratio-scale", type=_number(float, "a number"), default=1.0,
                   help="multiply every alpha/beta of the paper by this [default: 1, the paper's values]; values "
                        "below 1 give more style (1e-5 comes near the paper's look at 512 px; docs/gallery.md)")
    p.add_argument("--weights", default="caffe-normalized",
                   help="VGG-19 weights [default: caffe-normalized, the paper's network]")
    p.add_argument("--init", default="noise", help="initial image [default: noise, as in the paper]")
    p.add_argument("--device", default="auto", help="device: auto, cpu, cuda, cuda:N or mps [default: auto]")
    batch_cli.add_execution_flags(p, _number, unit="panel")

    batch_cli.add_parser(sub, _add_settings, _number)
    video_cli.add_parser(sub)
    sub.add_parser("layers", help="list VGG-19's layers with channels, stride and receptive field")
    web_cli.add_parser(sub)
    return parser


# --- running --------------------------------------------------------------------------------------------------

def settings_from_args(args: argparse.Namespace, task: str) -> Settings:
    """The run's settings from parsed flags: the task's defaults, the flags given, --ratio as beta; validated."""
    names = {f.name for f in dataclasses.fields(Settings)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    settings = Settings.for_task(task).replace(**overrides)
    ratio = getattr(args, "ratio", None)
    if ratio is not None:
        if "beta" in overrides:
            raise SettingsError("give {beta} or --ratio, not both", field="beta")
        if not (ratio > 0 and ratio != float("inf")):
            raise SettingsError(f"--ratio must be a finite number > 0, got {ratio}")
        settings = settings.replace(beta=settings.alpha / ratio)
    return settings.validated()


class _Reporter:
    """The progress bar (stderr, tqdm) and intermediate saves: the CLI's callback."""

    def __init__(self, steps: int, plan: outputs.OutputPlan, save_every: int | None, quiet: bool) -> None:
        self.plan, self.save_every, self.steps, self.quiet = plan, save_every, steps, quiet
        self.bar: Any = None

    def __call__(self, progress: Progress) -> None:
        entry.check()  # an interrupt whose exception was swallowed somewhere stops the run here
        if progress.kind != "step":
            return
        if self.bar is None and not self.quiet:  # opened at the first step: input errors come before any bar
            from tqdm import tqdm

            # Our own estimate of the time left replaces tqdm's, which knows neither stages nor time limits.
            self.bar = tqdm(total=progress.steps, unit="step", file=sys.stderr, dynamic_ncols=True, leave=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        if self.bar is not None:
            losses = progress.losses
            stage = progress.stage
            parts = [f"{_clock(progress.eta)} left" if progress.eta is not None else "",
                     f"{stage.size} px ({stage.index + 1}/{stage.count})" if stage and stage.count > 1 else "",
                     f"loss {losses['total']:.4g} content {losses['content']:.3g} style {losses['style']:.3g}"]
            self.bar.set_postfix_str("; ".join(p for p in parts if p), refresh=False)
            self.bar.update(progress.step - self.bar.n)
        if self.save_every and progress.step % self.save_every == 0 and progress.image is not None:
            imageio.save_image(progress.image, self.plan.intermediate(progress.step))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _run(args: argparse.Namespace, argv: Sequence[str], written: list[Path]) -> None:
    command = args.command
    settings = settings_from_args(args, command)
    if not args.output:
        raise SettingsError("-o/--output: give a file name such as out.png")
    if args.save_every is not None and args.save_every < 1:
        raise SettingsError(f"--save-every must be a positive integer, got {args.save_every}")
    # Every path the run will write, checked before the network loads (outputs.plan: names, folders, OS
    # errors, special files, two outputs that are one file).
    wants_ckpt = args.checkpoint_every is not None or args.checkpoint or args.resume or args.more_steps is not None
    ckpt_path = (args.checkpoint or args.output + ".ckpt") if wants_ckpt else None
    plan = outputs.plan(args.output, log=args.log or None, save_every=args.save_every, steps=settings.steps,
                        checkpoint=ckpt_path)

    ckpt = None
    resume: Any = args.resume
    if ckpt_path is not None:
        ckpt = checkpoints.Checkpointer(ckpt_path, args.checkpoint_every)
    if args.more_steps is not None:
        resume = checkpoints.load(args.resume or ckpt.path)  # type: ignore[union-attr]
        settings = checkpoints.extended(settings, resume, args.more_steps)
    reporter = _Reporter(settings.steps, plan, args.save_every, args.quiet)
    run: dict[str, Any] = {"settings": settings, "callback": reporter, "checkpoint": ckpt, "resume": resume}
    result: Result
    try:
        if command == "transfer":
            result = transfer(args.content, args.style, **run)
        elif command == "demo":
            result = transfer(DEMO_CONTENT, DEMO_STYLE, **run)
        elif command == "content":
            result = reconstruct_content(args.image, layer=args.layer, **run)
        else:
            result = synthesize_texture(args.style, layers=args.layers, **run)
    except KeyboardInterrupt:
        if ckpt is not None and ckpt.write():  # the state at the last step boundary
            print(f"gramstyle: state saved to {ckpt.path}; continue with --resume {ckpt.path}", file=sys.stderr)
        raise
    finally:
        reporter.close()
    entry.check()  # the last moment an interrupt may stop the run with nothing replaced
    result.save(args.output, log=args.log or None, extra={"command_line": ["gramstyle", *argv]}, written=written)
    entry.check()
    if not args.quiet:
        losses = result.losses
        print(f"wrote {args.output} ({result.steps} steps, {result.elapsed:.1f} s, {result.stop_reason}; "
              f"loss {losses['total']:.4g}) and {_and(written[1:])}", file=sys.stderr)


def _and(paths: Sequence[Path]) -> str:
    names = [str(p) for p in paths]
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def _figures(args: argparse.Namespace) -> int:
    from .batch import MANIFEST
    from .figures import PANELS, RESULTS, make_figures

    folder = Path(args.output)
    if folder.exists() and not folder.is_dir():
        raise SettingsError(f"{folder}: exists and is not a folder")
    if not folder.parent.is_dir() or not os.access(folder.parent, os.W_OK | os.X_OK):
        raise SettingsError(f"{folder}: folder {folder.parent} does not exist or is not writable")
    executor = batch_cli.executor_from_args(args)

    def start(on_job: Any, on_start: Any) -> tuple[Any, str]:
        made = make_figures(str(folder), size=args.size, steps=args.steps, only=args.only or ("fig1", "fig2", "fig3"),
                            picasso=args.picasso, ratio_scale=args.ratio_scale, executor=executor, on_job=on_job,
                            on_start=on_start, weights=args.weights, init=args.init, device=args.device)
        return made.summary, ", ".join([*(str(g) for g in made.grids), str(folder / RESULTS),
                                        str(folder / PANELS / MANIFEST)])

    return batch_cli.drive(args, start, unit="run")


def _list_layers() -> None:
    print(f"{'layer':8} {'type':5} {'channels':>8} {'stride':>6} {'receptive field':>15}")
    field, jump = 1, 1
    for layer in VGG19:
        field += (2 if layer.kind == "conv" else 1) * jump
        jump = layer.stride
        print(f"{layer.name:8} {layer.kind:5} {layer.channels:>8} {layer.stride:>6} {field:>12} px")
    print("conv layers are read after their ReLU (relu1_1 ... relu5_4 name the same layers).")


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    return f"gramstyle: warning: {message}\n"


def _join_negative_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--ratio -1e-3`` as ``--ratio=-1e-3``: argparse takes a value that starts with '-' for a flag unless it
    looks like a plain negative number, so a value in exponent notation would never reach its check."""
    parsers = [parser] + [sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                          for sub in action.choices.values()]
    takes_value = {option for p in parsers for action in p._actions for option in action.option_strings
                   if action.nargs is None and not isinstance(action, argparse._StoreConstAction)}
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in takes_value and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            try:
                float(argv[i + 1])
            except ValueError:
                pass
            else:
                out.append(f"{token}={argv[i + 1]}")
                i += 2
                continue
        out.append(token)
        i += 1
    return out


def prepare_process() -> None:
    """What the command line's own process sets up once, after its imports (and what `benchmarks/race.py`'s
    worker repeats, to time the process a user runs)."""
    # The objects the imports made (torch's hundreds of thousands) live as long as the process: freezing
    # them spares the full garbage collection that would otherwise scan them all (a tenth of a second).
    gc.freeze()
    # Each step's maps reused rather than returned to the system and faulted in again (`keep_freed_memory`)
    devices.keep_freed_memory()


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the real command line (not a call from Python): the signal policy, if not yet in place
        entry.install()
        prepare_process()
    argv = list(sys.argv[1:] if argv is None else argv)
    written: list[Path] = []  # what the run has replaced so far, in order
    output: list[str] = []
    try:
        entry.check()
        return _main(argv, written, output)
    except KeyboardInterrupt as exc:  # SIGINT or SIGTERM (entry.Interrupted), at any moment
        if written:
            what = f"wrote {_and(written)}"
        else:
            what = f"{output[0]} not replaced, nothing written" if output else "nothing written"
            what += " (the --save-every images written so far remain)" if "--save-every" in " ".join(argv) else ""
        print(f"gramstyle: interrupted; {what}", file=sys.stderr)
        return entry.exit_status(getattr(exc, "signum", signal.SIGINT))


def _main(argv: list[str], written: list[Path], output: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(parser, argv))
    if getattr(args, "output", None):
        output.append(args.output)
    warnings.formatwarning = _format_warning
    try:
        if args.command == "serve":
            return web_cli.run(args)
        if args.command == "layers":
            _list_layers()
        elif args.command == "figures":
            return _figures(args)
        elif args.command == "batch":
            return batch_cli.run(args, settings_from_args)
        elif args.command == "video":
            video_cli.run(args, argv)
        else:
            _run(args, argv, written)
    except GramstyleError as exc:
        print(f"gramstyle: error: {exc.render(flag)}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:  # e.g. a huge --size: the library resizes before it could know
        print("gramstyle: error: out of memory; try a smaller --size or --style-size", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
