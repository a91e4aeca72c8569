"""`batch-ml`: generate demo data, run the demo through a persistent Dagster instance.

The last line of `batch-ml demo` is one JSON object, for scripts and CI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

from batch_ml.config import ProjectConfig, load_config
from batch_ml.platform.sources.landing import discover
from batch_ml.platform.storage.files import exclusive_lock

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# In DAGSTER_HOME: written once the instance's storage exists; the lock serializes creating it.
HOME_MARKER = ".batch_ml_initialized"
HOME_LOCK = ".batch_ml_init.lock"


def echo(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def ensure_dagster_home(project_dir: Path, template: Path | None = None) -> Path:
    """Use $DAGSTER_HOME, or the project's `.dagster_home` (and set $DAGSTER_HOME to it);
    initialize it once if it is new (see `init_dagster_home`)."""
    home = Path(os.environ.get("DAGSTER_HOME") or project_dir / ".dagster_home").resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    return init_dagster_home(home, template or project_dir / "dagster.yaml")


def init_dagster_home(home: Path, template: Path) -> Path:
    """Initialize a Dagster home once, with `template` as its dagster.yaml if it has none.

    Dagster creates an instance's SQLite databases on first use, and two processes doing so
    at once can record their schema version twice (two alembic heads), after which every
    command fails. So one process, holding an exclusive lock file in the home, copies the
    project's dagster.yaml if absent, creates the storage and writes a marker; others wait
    for it, and once the marker exists nobody takes the lock again.
    """
    home = Path(home)
    if (home / HOME_MARKER).exists():
        return home
    home.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(home / HOME_LOCK):
        if not (home / HOME_MARKER).exists():
            _initialize_home(home, Path(template))
    return home


def _replace_atomically(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _initialize_home(home: Path, template: Path) -> None:
    if template.exists() and not (home / "dagster.yaml").exists():
        _replace_atomically(home / "dagster.yaml", lambda tmp: shutil.copyfile(template, tmp))
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        # Opening the instance creates its run, event-log and schedule databases; these calls
        # make sure each is there and readable before the marker says so.
        instance.get_runs(limit=1)
        instance.get_asset_keys()
        instance.all_instigator_state()
    _replace_atomically(
        home / HOME_MARKER,
        lambda tmp: tmp.write_text(f"initialized by batch_ml with dagster {dg.__version__}\n"),
    )


def demo_products(cfg: ProjectConfig) -> list:
    """The enabled products that have demo data, in catalog order."""
    from batch_ml.definitions import enabled_products

    return [p for p in enabled_products(cfg) if p.demo is not None]


def generate(cfg: ProjectConfig, force: bool = False) -> dict[str, dict[str, int] | None]:
    """Write each product's demo landing files unless present: product -> files written."""
    return {p.name: p.demo.generate(cfg, force) for p in demo_products(cfg)}


def _landed_days(cfg: ProjectConfig, product) -> tuple[dt.date, dt.date]:
    source = product.sources(cfg)[product.demo.period_source]
    files, _ = discover(cfg.paths.landing, source)
    days = sorted(f.partition for f in files if f.partition >= cfg.start_date)
    if cfg.end_date:
        days = [d for d in days if d < cfg.end_date]
    if not days:
        raise SystemExit(f"no {source.name} files in {cfg.paths.landing / source.name}")
    return days[0], days[-1]


def run_product(cfg: ProjectConfig, instance, product, defs=None) -> dict:
    """Materialize a product's whole graph for the period its landed files cover, in the
    fewest runs.

    The stages come from the product's declaration (`catch_up_stages`): the reference data,
    the daily assets the weekly ones read over every day, the weekly assets over every week,
    the rest of the daily chain over every day, the report. Each stage is one run over its
    whole partition range (assets process a range in one step), so the instance records
    every partition and the UI shows them with their runs.
    """
    import dagster as dg

    from batch_ml.definitions import build_definitions
    from batch_ml.platform.orchestration import catch_up_stages

    defs = defs or build_definitions(cfg)
    first_day, last_day = _landed_days(cfg, product)
    first_week = product.first_week(cfg)
    if last_day < first_week:
        raise SystemExit(
            f"{product.name}: files end on {last_day}, before its first model week {first_week}"
        )
    stages = catch_up_stages(product, defs.resolve_asset_graph(), first_day, last_day, first_week)
    timings = {}
    for stage in stages:
        selection = [dg.AssetKey(a) for a in stage.assets] if stage.assets else None
        start = time.perf_counter()
        result = defs.resolve_job_def(stage.job).execute_in_process(
            instance=instance,
            tags=stage.tags,
            run_config=QUIET_LOGS,
            raise_on_error=True,
            asset_selection=selection,
        )
        timings[stage.label] = round(time.perf_counter() - start, 2)
        span = f" {stage.first}..{stage.last}" if stage.first else ""
        echo(f"  {stage.label}{span}  {timings[stage.label]:.2f} s  run {result.run_id[:8]}")
    echo(f"  {product.name}: {len(stages)} runs, {sum(timings.values()):.2f} s")
    return {
        "first_day": first_day,
        "last_day": last_day,
        "first_week": first_week,
        "timings": timings,
    }


def run_pipeline(cfg: ProjectConfig, instance) -> dict[str, dict]:
    """`run_product` for every enabled product with demo data: product -> its run.

    Products share no asset, so on a persistent instance each runs in its own process, at
    the same time as the others (one product's single-threaded stages use the core another
    leaves idle; the tables and the warehouse take their locks). On an ephemeral instance,
    which another process cannot reach, they run one after the other."""
    from batch_ml.definitions import build_definitions

    products = demo_products(cfg)
    if len(products) < 2 or instance.is_ephemeral:
        defs = build_definitions(cfg)
        return {p.name: run_product(cfg, instance, p, defs) for p in products}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter per product (forking a process that holds Dagster's and
    # DuckDB's threads and connections is unsafe).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(products), mp_context=context) as pool:
        runs = {
            p.name: pool.submit(_run_product_alone, cfg, instance.get_ref(), p.name)
            for p in products
        }
        return {name: run.result() for name, run in runs.items()}


def _run_product_alone(cfg: ProjectConfig, instance_ref, name: str) -> dict:
    """`run_product` in a process of its own, on the instance `instance_ref` names."""
    import dagster as dg

    from batch_ml.definitions import build_definitions

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    [product] = [p for p in demo_products(cfg) if p.name == name]
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        return run_product(cfg, instance, product, build_definitions(cfg, products=[product]))


def demo_summary(cfg: ProjectConfig, instance, runs: dict[str, dict], elapsed: float):
    """Console lines and the JSON summary: per product its partitions, period, runs and
    figures; in all, the time, runs and stage times."""
    import dagster as dg

    lines, products = [], {}
    for product in demo_products(cfg):
        run = runs[product.name]
        product_lines, values = product.demo.summarize(cfg, instance)
        lines += ["", *product_lines]
        products[product.name] = {
            "partitions": {
                key: len(instance.get_materialized_partitions(dg.AssetKey(key)))
                for key in (*product.daily, *product.weekly)
            },
            "period": [run["first_day"].isoformat(), run["last_day"].isoformat()],
            **values,
            "runs": len(run["timings"]),
            "stage_seconds": run["timings"],
        }
    summary = {
        "products": products,
        "warehouse": str(cfg.paths.warehouse),
        "dagster_home": os.environ.get("DAGSTER_HOME"),
        "seconds": round(elapsed, 1),
        "runs": sum(p["runs"] for p in products.values()),
    }
    return lines, summary


def cmd_demo(args) -> int:
    started = time.perf_counter()
    config_path = Path(args.config or os.environ.get("BATCH_ML_CONFIG") or "batch_ml.toml")
    cfg = load_config(config_path)
    home = ensure_dagster_home(config_path.resolve().parent)
    written = generate(cfg)
    echo("batch_ml demo")
    echo(f"  landing data: {cfg.paths.landing}")
    for name, files in written.items():
        what = ", ".join(f"{n} {k} files" for k, n in files.items()) if files else "present"
        echo(f"  {name}: {'generated ' + what if files else 'already ' + what}")
    echo(f"  Dagster instance: {home}")

    import dagster as dg

    # Beta/preview notices (e.g. on BackfillPolicy) are for developers, not demo users.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    with dg.DagsterInstance.get() as instance:
        runs = run_pipeline(cfg, instance)
        lines, summary = demo_summary(cfg, instance, runs, time.perf_counter() - started)
    for line in lines:
        echo(line)
    echo(f"Done in {summary['seconds']} s. `make ui` shows the runs and partitions.")
    echo(json.dumps(summary, default=str))
    return 0


class ChampionError(Exception):
    """A `batch-ml champion` request that cannot be served: one line for the user."""


class ChampionTarget:
    """The champion machinery of one product, from its declaration and its definitions: the
    override asset (and the op its run config addresses), the gate table and the product's
    definitions (for its override job)."""

    def __init__(self, cfg: ProjectConfig, product) -> None:
        import dagster as dg

        from batch_ml.definitions import build_definitions

        self.product = product
        with warnings.catch_warnings():  # notices about the definitions, not for CLI users
            warnings.simplefilter("ignore")
            self.defs = build_definitions(cfg, [product])
            graph = self.defs.resolve_asset_graph()
        node = graph.get(dg.AssetKey(product.override))
        self.overrides = product.override
        self.override_op = node.assets_def.node_def.name
        # The gate is the product's weekly asset that reads the overrides (`GateSpec`: the
        # gate asset depends on the overrides asset); the daily predictions read them too.
        gates = sorted(k.to_user_string() for k in node.child_keys)
        gates = [name for name in gates if name in product.weekly]
        if len(gates) != 1:
            raise ChampionError(
                f"product {product.name!r}: no single weekly gate reads {product.override} "
                f"(found: {', '.join(gates) or 'none'})"
            )
        self.gate = gates[0]


def champion_product(cfg: ProjectConfig, name: str | None, config_path: Path):
    """The enabled product `batch-ml champion` addresses: `name`, or when omitted the first
    enabled product with champion overrides in catalog order (forecasting, or the only one)."""
    from batch_ml.definitions import enabled_products
    from batch_ml.products import CATALOG

    enabled = enabled_products(cfg)
    with_champion = [p for p in enabled if p.override]
    names = ", ".join(p.name for p in with_champion) or "none"
    if name is None:
        if not with_champion:
            raise ChampionError(f"no enabled product in {config_path} has a champion")
        return with_champion[0]
    product = next((p for p in enabled if p.name == name), None)
    if product is None and name in CATALOG:
        raise ChampionError(
            f"product {name!r} is not enabled in {config_path} (enabled products: {names})"
        )
    if product is None:
        raise ChampionError(
            f"unknown product {name!r} (products: {', '.join(CATALOG)}; enabled: {names})"
        )
    if not product.override:
        raise ChampionError(
            f"product {name!r} has no champion overrides (products with a champion: {names})"
        )
    return product


def cmd_champion(args) -> int:
    """Show a product's champion history, or record a pin / unpin / rollback through its
    override job."""
    config_path = Path(args.config or os.environ.get("BATCH_ML_CONFIG") or "batch_ml.toml")
    cfg = load_config(config_path)
    try:
        target = ChampionTarget(cfg, champion_product(cfg, args.product, config_path))
    except ChampionError as exc:
        sys.stderr.write(f"batch-ml champion: {exc}\n")
        return 2
    ensure_dagster_home(config_path.resolve().parent)
    if args.action == "show":
        return _show_champions(cfg, target)
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    product = target.product
    config = {"action": args.action, "reason": args.reason, "requested_by": args.by}
    if args.effective_date:
        config["effective_date"] = args.effective_date
    if getattr(args, "version", None):
        config["model_version"] = args.version
    job = target.defs.resolve_job_def(product.champion_override_job)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            run_config={**QUIET_LOGS, "ops": {target.override_op: {"config": config}}},
            raise_on_error=False,
        )
    if not result.success:
        failure = next((e for e in result.all_events if e.event_type_value == "STEP_FAILURE"), None)
        error = failure.step_failure_data.error if failure else None
        reason = failure.step_failure_data.user_failure_data if failure else None
        message = (reason.description if reason else None) or (error.message if error else "")
        echo(f"refused: {message.strip()} (run {result.run_id[:8]})")
        return 1
    echo(
        f"{product.name}: recorded {args.action} in {target.overrides} (run {result.run_id[:8]}); "
        "it applies from its effective day."
    )
    echo(
        f"Re-run the days from then on ({product.daily_job}, or just their predictions) to "
        "serve the new champion."
    )
    return 0


def _show_champions(cfg: ProjectConfig, target: ChampionTarget) -> int:
    import polars as pl

    from batch_ml.platform.storage.tables import PartitionedTable

    product = target.product
    gate = PartitionedTable(cfg.paths.tables, target.gate)
    if not gate.partitions():
        echo(
            f"{product.name}: no gate decision yet: materialize {target.gate} "
            f"({product.training_job})"
        )
        return 1
    rows = (
        gate.read()
        .sort("model_week")
        .select("model_week", "challenger_version", "decision", "champion_version", "reason")
    )
    echo(f"{product.name}: gate decisions ({target.gate})")
    with pl.Config(tbl_rows=-1, tbl_width_chars=160, fmt_str_lengths=70):
        echo(str(rows))
        overrides = PartitionedTable(cfg.paths.tables, target.overrides)
        if overrides.partitions():
            echo(f"{product.name}: overrides ({target.overrides})")
            echo(str(overrides.read().sort("recorded_at")))
    return 0


def cmd_generate(args) -> int:
    cfg = load_config(args.config)
    written = generate(cfg, force=True)
    echo(json.dumps({"landing": str(cfg.paths.landing), "files": written}))
    return 0


def cmd_init_home(args) -> int:
    """Initialize DAGSTER_HOME (`make setup` runs this before anything uses the instance)."""
    config_path = Path(args.config or os.environ.get("BATCH_ML_CONFIG") or "batch_ml.toml")
    template = Path(args.dagster_yaml).resolve() if args.dagster_yaml else None
    if template is not None and not template.is_file():
        raise SystemExit(f"--dagster-yaml {template}: no such file")
    project = config_path.resolve().parent
    home = ensure_dagster_home(project, template)
    settings = home / "dagster.yaml"
    if template is not None and not settings.exists():
        _replace_atomically(settings, lambda tmp: shutil.copyfile(template, tmp))
    elif template is not None and settings.read_bytes() != template.read_bytes():
        if home == (project / ".dagster_home").resolve():
            # The project's own home follows the project's instance settings (e.g. run
            # monitoring added later); the replaced file is kept beside it.
            with exclusive_lock(home / HOME_LOCK):
                shutil.copyfile(settings, settings.with_suffix(".yaml.bak"))
                _replace_atomically(settings, lambda tmp: shutil.copyfile(template, tmp))
            echo(f"{settings}: updated from {template} (the old one: dagster.yaml.bak)")
        else:  # a home of the user's own: their settings, only pointed out
            echo(f"{settings} differs from {template}: compare them (e.g. run_monitoring)")
    echo(f"Dagster instance: {home}")
    return 0


def cmd_views(args) -> int:
    """Create or rebuild the warehouse views for the configured data root (e.g. after the
    data folder was copied or moved)."""
    from batch_ml.platform.storage.warehouse import refresh_views

    cfg = load_config(args.config)
    written = refresh_views(cfg.paths.warehouse, cfg.paths.tables)
    echo(json.dumps({"warehouse": str(cfg.paths.warehouse), "views_written": written}))
    return 0


def cmd_digest(args) -> int:
    """Content digests of the enabled products' outputs (same inputs and seed: same digests)."""
    from batch_ml.definitions import enabled_products
    from batch_ml.platform.storage.digest import table_digest

    cfg = load_config(args.config)
    digests = {
        table: table_digest(cfg.paths.tables, table, volatile)
        for product in enabled_products(cfg)
        for table, volatile in product.outputs.items()
    }
    echo(json.dumps(digests, indent=2, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batch-ml", description=__doc__)
    parser.add_argument(
        "--config", help="project config file (default: $BATCH_ML_CONFIG or batch_ml.toml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="generate demo data if absent and materialize the whole graph")
    sub.add_parser(
        "generate", help="(re)write every enabled product's demo landing files ([<product>.demo])"
    )
    init_home = sub.add_parser(
        "init-home", help="initialize DAGSTER_HOME once (its storage, and dagster.yaml if absent)"
    )
    init_home.add_argument(
        "--dagster-yaml", help="instance settings to copy (default: dagster.yaml beside the config)"
    )
    sub.add_parser("views", help="rebuild the warehouse views for the configured data root")
    sub.add_parser("digest", help="content digests of the stored outputs, as JSON")
    champion = sub.add_parser(
        "champion", help="show the champion history, or pin / unpin / roll back the champion"
    )
    product_help = (
        "the product whose champion it is (default: the first enabled product with a "
        "champion in catalog order, i.e. forecasting, or the only one)"
    )
    champion.add_argument("--product", default=None, help=product_help)
    actions = champion.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="gate decisions per model week and recorded overrides")
    # Also after the action (`champion pin V --product P`); SUPPRESS keeps a value given before.
    show.add_argument("--product", default=argparse.SUPPRESS, help=product_help)
    for name, text in (
        ("pin", "make VERSION the champion until unpinned"),
        ("unpin", "let the gate decide again"),
        ("rollback", "go back to the previous champion (or --to VERSION)"),
    ):
        action = actions.add_parser(name, help=text)
        if name == "pin":
            action.add_argument("version", help="model version (see `batch-ml champion show`)")
        if name == "rollback":
            action.add_argument("--to", dest="version", help="model version to go back to")
        action.add_argument("--reason", required=True, help="why (recorded with the override)")
        action.add_argument(
            "--effective-date", help="first forecast day it applies to (default: tomorrow)"
        )
        action.add_argument("--by", default=os.environ.get("USER", ""), help="who asks")
        action.add_argument("--product", default=argparse.SUPPRESS, help=product_help)
    args = parser.parse_args(argv)
    commands = {
        "demo": cmd_demo,
        "generate": cmd_generate,
        "champion": cmd_champion,
        "init-home": cmd_init_home,
        "views": cmd_views,
        "digest": cmd_digest,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
