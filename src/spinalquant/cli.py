"""The ``spinalquant`` command: a thin shell over :mod:`spinalquant.batch`.

This is the only module that configures logging or prints.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__

app = typer.Typer(
    name="spinalquant",
    help=(
        "Count and measure donor GFP+ cells, GFAP+ astrocytes, ChAT+ motor neurons, "
        "synaptic puncta and muscle fibers in confocal images, in micrometres.\n\n"
        "Typical use:  spinalquant run my_images/ --out results/"
    ),
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spinalquant {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """spinalquant: quantify ALS cell-therapy micrographs."""


@app.command()
def run(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Image files or folders (searched recursively for .tif, .ome.tif, .czi, .lif, .nd2 ...).",
                       show_default=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the results (created if needed).")] = Path(
        "spinalquant_results"
    ),
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file of parameters (see: spinalquant config --defaults)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-j", help="Images analysed in parallel [default: number of CPU cores].", min=1),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Address of a running dask.distributed scheduler (tcp://host:8786)."),
    ] = None,
    pixel_size: Annotated[
        float | None,
        typer.Option("--pixel-size", help="µm per pixel for files without calibration (overrides the config)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo images even if their results are up to date.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be analysed, then stop.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; one line per image (for logs).")] = False,
    scene: Annotated[
        list[int] | None,
        typer.Option("--scene", help="Of files holding several scenes (LIF, CZI, ND2, multi-image "
                     "OME-TIFF), analyse only this scene number (from 0; repeat for more) "
                     "[default: every scene].", min=0, show_default=False),
    ] = None,
) -> None:
    """Analyse every image found in INPUTS and write tables, label images and QC overlays.

    Each image is classified as a spinal-cord section (it has GFP, GFAP, ChAT or a
    synaptic-marker channel) or a muscle section (Laminin/Dystrophin/WGA, or an RGB
    H&E image). Results go to OUT: summary.csv (one row per image), objects/*.csv
    (one row per cell, neuron, punctum or fiber), labels/, qc/ (overlays to check by
    eye), report.html and run.json (parameters, versions, input hashes).

    A file holding several scenes (a Leica .lif project, CZI/ND2 scenes, a multi-image
    OME-TIFF) gives one image per scene, named "file.lif [scene name]" (or
    "file.lif #i").

    Exit status: 0 all images analysed, 1 some images failed (the others are still
    written), 2 bad usage or configuration. Re-running with the same --out skips
    images that are already done and unchanged.
    """
    from rich.console import Console
    from rich.markup import escape

    from .batch import discover_inputs, run_batch, unread_images
    from .config import ImageParams, load_config
    from .errors import ConfigError, SpinalquantError

    err = Console(stderr=True, highlight=False)
    try:
        cfg = load_config(config)
        if pixel_size is not None:
            from dataclasses import replace

            cfg = replace(cfg, image=ImageParams(**{**cfg.image.__dict__, "pixel_size_um": pixel_size}))
        items = discover_inputs(inputs)
        if scene:
            items = [it for it in items if it.n_scenes <= 1 or it.scene in set(scene)]
    except (ConfigError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    unread = unread_images(inputs)
    if unread:
        kinds = ", ".join(f"{n} {ext}" for ext, n in unread.items())
        err.print(escape(f"note: {sum(unread.values())} image file(s) of types spinalquant does "
                         f"not read were skipped ({kinds}); export them as OME-TIFF to include them"),
                  soft_wrap=True)
    if not items:
        what = f"no scene {', '.join(map(str, scene))} of" if scene else "no supported image files found in"
        err.print(f"[red]error:[/red] {what} {escape(', '.join(map(str, inputs)))}")
        raise typer.Exit(2)
    n_workers = workers or os.cpu_count() or 1
    n_workers = min(n_workers, len(items))
    if dry_run:
        for it in items:
            typer.echo(f"{it.image}\t{it.path}")
        err.print(f"{_count_images(items)} would be analysed into {escape(str(out))}")
        raise typer.Exit(0)

    where = f"scheduler {scheduler}" if scheduler else f"{n_workers} worker(s)"
    err.print(f"spinalquant {__version__}: {_count_images(items)} → {escape(str(out))} ({escape(where)})")
    try:
        if quiet or not err.is_terminal:
            def on_result(o, i, n):
                msg = o.error if o.status == "failed" else ", ".join(f"{k}={v}" for k, v in o.counts.items())
                err.print(escape(f"[{i}/{n}] {o.status:7s} {o.image}  {msg}"), soft_wrap=True)
                for note in o.notes:
                    err.print(escape(f"  note: {o.image}: {note}"), soft_wrap=True)
            report = run_batch(items, out, cfg, workers=n_workers, scheduler=scheduler, force=force,
                               on_result=on_result, config_source=str(config) if config else None)
        else:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), console=err, transient=False) as bar:
                task = bar.add_task("analysing", total=len(items))

                def on_result(o, i, n):
                    colour = {"ok": "green", "skipped": "blue", "failed": "red"}[o.status]
                    msg = o.error if o.status == "failed" else ""
                    bar.console.print(f"[{colour}]{o.status:7s}[/{colour}] {escape(f'{o.image} {msg}')}")
                    for note in o.notes:
                        bar.console.print(f"[yellow]note:[/yellow] {escape(f'{o.image}: {note}')}")
                    bar.update(task, completed=i)
                report = run_batch(items, out, cfg, workers=n_workers, scheduler=scheduler, force=force,
                                   on_result=on_result, config_source=str(config) if config else None)
    except SpinalquantError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot write results to {escape(str(out))}: {escape(str(exc))}")
        raise typer.Exit(2) from None

    err.print(
        f"done in {report.elapsed_s:.1f} s: {report.n_ok} analysed "
        f"({report.n_skipped} unchanged, skipped), {report.n_failed} failed."
    )
    if report.earlier:
        shown = ", ".join(report.earlier[:5]) + (", ..." if len(report.earlier) > 5 else "")
        err.print(escape(
            f"note: the tables also keep {len(report.earlier)} image(s) analysed into {out} by "
            f"earlier runs ({shown}); choose a new --out for a table of these inputs only"),
            soft_wrap=True)
    err.print(escape(f"results: {out / 'summary.csv'}  objects: {out / 'objects'}  QC: {out / 'qc'}"
                     + (f"  report: {out / 'report.html'}" if (out / "report.html").exists() else "")))
    if report.n_failed:
        for o in report.outcomes:
            if o.status == "failed":
                err.print(f"  [red]failed[/red] {escape(f'{o.image}: {o.error}')}", soft_wrap=True)
        raise typer.Exit(1)


def _count_images(items: list) -> str:
    """``"12 image(s)"``, or ``"12 image(s) (scenes of 3 files)"`` when files hold several."""
    n_files = len({it.path for it in items})
    if n_files == len(items):
        return f"{len(items)} image(s)"
    return f"{len(items)} image(s) (the scenes of {n_files} file(s))"


@app.command("config")
def config_cmd(
    defaults: Annotated[bool, typer.Option("--defaults", help="Print the default configuration as commented TOML.")] = False,
    check: Annotated[Path | None, typer.Option("--check", help="Validate a config file and print the resolved values.")] = None,
) -> None:
    """Show or check analysis parameters (TOML)."""
    from .config import default_config_toml, load_config
    from .errors import ConfigError

    if check is not None:
        try:
            cfg = load_config(check)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        import json

        typer.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    if not defaults:
        typer.echo("use --defaults to print the default configuration, or --check FILE", err=True)
        raise typer.Exit(2)
    typer.echo(default_config_toml(), nl=False)


@app.command("stats")
def stats_cmd(
    results: Annotated[Path, typer.Argument(help="Folder written by 'spinalquant run' (has summary.csv).",
                                            show_default=False)],
    samples: Annotated[
        Path | None,
        typer.Option("--samples", "-s", help="Sample sheet CSV: image, animal, group (+ any factors).",
                     show_default=False),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder [default: RESULTS/stats].",
                                  show_default=False)
    ] = None,
    adjust: Annotated[str, typer.Option("--adjust", help="Dunn p-value adjustment: holm, bonferroni or none.")] = "holm",
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Write tables only.")] = False,
) -> None:
    """Compare groups of animals: per-animal means, ANOVA + Tukey, Kruskal-Wallis + Dunn, plots.

    Images are averaged per animal first (the animal is the unit of replication).
    Writes OUT/stats.csv (one row per measure x comparison), per_animal.csv,
    groups.csv, excluded.csv, notes.txt and plots/ (PNG + SVG).
    Exit status: 0 done, 2 bad usage (missing files, bad sample sheet).
    """
    from .errors import SpinalquantError
    from .stats import run_stats

    if samples is None:
        typer.echo("error: --samples SAMPLES.csv is required (columns image, animal, group)", err=True)
        raise typer.Exit(2)
    if adjust not in ("holm", "bonferroni", "none"):
        typer.echo(f"error: --adjust must be holm, bonferroni or none, not {adjust!r}", err=True)
        raise typer.Exit(2)
    try:
        rep = run_stats(results, samples, out, adjust=adjust, plots=not no_plots)
    except (SpinalquantError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: cannot write statistics to {out or results / 'stats'}: {exc}", err=True)
        raise typer.Exit(2) from None
    for note in rep.warnings:
        typer.echo(note, err=True)
    omni = rep.stats[rep.stats["comparison"] == "all groups"]
    for _, r in omni.iterrows():
        if isinstance(r.get("error"), str) and r["error"]:
            typer.echo(f"{r['measure']:>26s}: not tested (see stats.csv)", err=True)
        elif r["anova_p"] != r["anova_p"]:  # NaN: no spread at all
            typer.echo(f"{r['measure']:>26s}: not testable ({r['note']})", err=True)
        else:
            typer.echo(f"{r['measure']:>26s}: ANOVA p = {r['anova_p']:.3g}, "
                       f"Kruskal-Wallis p = {r['kruskal_p']:.3g} (n = {int(r['n_animals'])} animals)",
                       err=True)
    typer.echo(f"{len(rep.per_animal)} animals; statistics written to {rep.out_dir}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    try:
        app(args=argv, prog_name="spinalquant", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return int(code) if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
