"""`enrich`: one command per pipeline step, plus `nightly`. The jobs/ scripts call `main` too.

    enrich generate --profiles 20000 --days 365 --seed 7
    enrich nightly --run-date 2026-11-27 --env local --set lakehouse.root=/data/lake
    enrich backfill --from 2026-11-01 --to 2026-11-27   # each date's nightly, skipping dates done
    enrich changes --since-version 41          # what changed on the profile table since version 41
    enrich export --out exports/2026-11-27     # XDM profile records and the field group schema
    enrich show --identity Email:ann@example.com
    enrich forget --identity Email:ann@example.com    # a deletion request; `enrich vacuum` later
    enrich models                              # every model, its champion and latest holdout numbers
    enrich models validate                     # what is wrong with the custom model definitions

Exit codes: 0 done; 2 bad input or configuration; 3 blocked by a quality gate; 1 unexpected.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from datetime import date, datetime, timezone
from typing import Callable, Sequence

from pipelines.core.errors import BadInputError, EnrichError

STEP_ORDER = ("ingest", "validate", "features", "train", "score", "publish")
# Commands that read the profile table for downstream systems and people; no run date.
READERS = ("changes", "export", "show")
PRIVACY = ("forget", "vacuum")
# Commands that read the model definitions; a bad one stops them before Spark starts.
MODEL_USERS = ("train", "score", "publish", "nightly", "backfill")
COMMANDS = ("generate",) + STEP_ORDER + ("nightly", "backfill") + READERS + PRIVACY + ("models",)

log = logging.getLogger("enrich")


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line and exits with code 2."""

    def error(self, message: str):  # noqa: D401 - argparse's signature
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _run_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum` (1 for counts, 0 for table versions)."""
    def _parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value
    return _parse


_positive_int = _whole_number(1)
_version = _whole_number(0)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env", default="local", choices=["local", "cluster"],
                        help="configuration overlay (conf/<env>.yaml); default local")
    common.add_argument("--conf", action="append", default=[], metavar="FILE",
                        help="extra YAML overlay, applied in order (repeatable)")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override one setting, e.g. --set lakehouse.root=/data/lake (repeatable)")
    common.add_argument("--run-date", type=_run_date, default=None, metavar="YYYY-MM-DD",
                        help="the nightly run's date; events before it are used (default: today, UTC)")
    common.add_argument("--verbose", action="store_true", help="show tracebacks and Spark's own logs")

    parser = _OneLineParser(prog="enrich", description="Nightly profile enrichment on Spark and Delta Lake.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_OneLineParser)
    gen = sub.add_parser("generate", parents=[common], help="write sample XDM data into the landing folder")
    gen.add_argument("--profiles", type=_positive_int, default=None, help="people to simulate")
    gen.add_argument("--days", type=_positive_int, default=None, help="days of history before the run date")
    gen.add_argument("--seed", type=int, default=None, help="random seed; same seed, same bytes")
    gen.add_argument("--products", type=_positive_int, default=None,
                     help="catalogue size, spread evenly over the 12 categories (default 300)")
    helps = {
        "ingest": "landing XDM files -> bronze tables and quarantine -> silver identity graph and events",
        "validate": "Great Expectations suites on the events and profiles ingested for the run date",
        "features": "point-in-time person features as of the run date -> gold/features",
        "train": "train, evaluate and register the propensity models (MLflow)",
        "score": "score every eligible person with each model's champion -> gold/scores",
        "publish": "MERGE the run date's scores into gold/profile_enrichment",
        "nightly": "ingest, validate, features, train, score, publish, in order; resumes a night that stopped",
    }
    for name in STEP_ORDER + ("nightly",):
        step = sub.add_parser(name, parents=[common], help=helps[name])
        if name == "train":
            step.add_argument("--model", default=None, metavar="NAME",
                              help="train only this model (see `enrich models`)")
        if name == "nightly":
            start = step.add_mutually_exclusive_group()
            start.add_argument("--from-step", choices=STEP_ORDER, default=None,
                               help="start at this step (default: where the last run of the date stopped)")
            start.add_argument("--only-step", choices=STEP_ORDER, default=None,
                               help="run only this step of the night (a scheduler's task per step)")
            step.add_argument("--invocation", default=None, metavar="ID",
                              help="the night's id when a scheduler runs it one step per task "
                                   "(e.g. Airflow's run_id), so its tasks resume as one night")
            step.add_argument("--force", action="store_true",
                              help="run every step, even where the last run of the date stopped part-way")
    backfill = sub.add_parser("backfill", parents=[common], help="the nightly for each date in a range, in order")
    backfill.add_argument("--from", dest="first", type=_run_date, required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--to", dest="last", type=_run_date, required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--force", action="store_true", help="rerun dates that are already done")
    changes = sub.add_parser("changes", parents=[common],
                             help="profiles changed after a table version, from the change feed (JSON lines)")
    changes.add_argument("--since-version", type=_version, required=True, metavar="N",
                         help="the profile table version last taken; changes in N+1..latest are returned")
    changes.add_argument("--out", default=None, metavar="DIR", help="write JSON lines here instead of printing")
    export = sub.add_parser("export", parents=[common],
                            help="profiles as XDM Individual Profile records plus the field group's JSON Schema")
    export.add_argument("--out", required=True, metavar="DIR", help="folder for profiles/ and schema.json")
    export.add_argument("--since-version", type=_version, default=None, metavar="N",
                        help="only profiles changed after table version N")
    forget = sub.add_parser("forget", parents=[common],
                            help="delete a person and every linked identity from every table, with a receipt")
    forget.add_argument("--identity", required=True, metavar="NAMESPACE:ID", help="any identity of the person")
    sub.add_parser("vacuum", parents=[common],
                   help="remove table files older than privacy.retention_hours (deleted people's old rows)")
    show = sub.add_parser("show", parents=[common], help="a person's current attributes and factors")
    show.add_argument("--identity", required=True, metavar="NAMESPACE:ID",
                      help="any identity of the person, e.g. Email:ann@example.com")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    models = sub.add_parser("models", parents=[common],
                            help="list every model with its champion and holdout numbers, or validate custom ones")
    models.add_argument("action", nargs="?", choices=["list", "validate"], default="list",
                        help="list (default), or validate the custom model definitions without training")
    models.add_argument("--model", default=None, metavar="NAME", help="validate only this model")
    models.add_argument("--json", action="store_true", help="list as JSON")
    return parser


NOISY_LOGGERS = ("py4j", "mlflow", "great_expectations", "alembic", "urllib3", "botocore", "boto3")


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(message)s", force=True)
    _quiet_libraries(verbose)


def _quiet_libraries(verbose: bool) -> None:
    # Called again after imports: some libraries set their own levels when imported.
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.ERROR)
        for child in list(logging.root.manager.loggerDict):
            if child.startswith(noisy + "."):
                logging.getLogger(child).setLevel(logging.INFO if verbose else logging.ERROR)
    # PySpark logs every analysis error it raises, with the JVM stack, as one JSON line; the
    # pipeline reports those errors itself, in one line of its own.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.INFO if verbose else logging.CRITICAL)


def _step_functions() -> dict[str, Callable]:
    # Imported here so `enrich --help` and option errors answer without starting Spark.
    from pipelines.features import run as features
    from pipelines.ingest import run as ingest
    from pipelines.models import run as train
    from pipelines.publish import run as publish
    from pipelines.quality import run as validate
    from pipelines.scoring import run as score
    return {"ingest": ingest.run, "validate": validate.run, "features": features.run,
            "train": train.run, "score": score.run, "publish": publish.run}


def _generate(args, cfg) -> int:
    from pipelines.generate.synthetic import GenerateOptions, generate

    if "://" in cfg.root:
        raise BadInputError(f"generate writes local files; lakehouse.root is {cfg.root}")
    try:
        opts = GenerateOptions(
            run_date=args.run_date,
            profiles=args.profiles or int(cfg.get("generate.profiles")),
            days=args.days or int(cfg.get("generate.days")),
            seed=args.seed if args.seed is not None else int(cfg.get("generate.seed")),
            files=int(cfg.get("generate.files")),
            **({"products": args.products} if args.products else {}),
        )
    except ValueError as err:
        raise BadInputError(str(err)) from err
    log.info("generating %d people over %d days ending %s (seed %d)", opts.profiles, opts.days,
             args.run_date, opts.seed)
    result = generate(cfg.landing("events"), cfg.landing("profiles"), cfg.landing("ground_truth"), opts,
                      progress=lambda done, total, events: log.info("  %d/%d files written, %d events so far",
                                                                    done, total, events))
    print(f"generated {result.events} events ({result.duplicates} repeated deliveries, "
          f"{result.bad_records} malformed) and {result.profiles} profiles for {result.people} people")
    print(f"landing: {os.path.dirname(cfg.landing('events'))}")
    return 0


def _run_steps(args, cfg) -> int:
    from pipelines.ops import runner
    from pipelines.ops.summary import print_summary
    from pipelines.core.session import build_session

    if args.command == "backfill":
        dates = runner.backfill_dates(args.first, args.last)
    else:
        dates = (args.run_date,)
    request = runner.Request(command=args.command, run_dates=dates, model=getattr(args, "model", None),
                             from_step=getattr(args, "from_step", None), only_step=getattr(args, "only_step", None),
                             force=getattr(args, "force", False), invocation=getattr(args, "invocation", None))
    spark = build_session(cfg)
    if not args.verbose:
        spark.sparkContext.setLogLevel("ERROR")
    # Progress bars of artifact downloads would interleave with the step log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401 - imported now so its logging set-up can be quietened
    _quiet_libraries(args.verbose)
    return runner.run(spark, cfg, request, _step_functions(), STEP_ORDER, print_summary)


def _privacy(args, cfg) -> int:
    from pipelines.ops.lock import NightlyLock
    from pipelines.ops.orchestration import new_invocation_id
    from pipelines.privacy import forget
    from pipelines.publish.commands import parse_identity
    from pipelines.core.session import build_session

    identity = parse_identity(args.identity) if args.command == "forget" else None
    spark = build_session(cfg)
    if not args.verbose:
        spark.sparkContext.setLogLevel("ERROR")
    with NightlyLock(spark, cfg, {"command": args.command, "run_date": "-", "token": new_invocation_id()}):
        if identity is None:
            tables = forget.vacuum(spark, cfg)
            print(f"vacuumed {len(tables)} tables, keeping {cfg.get('privacy.retention_hours')} hours of history")
            return 0
        receipt = forget.forget(spark, cfg, *identity)
    if not receipt["people"]:
        quarantined = receipt["rows_removed"].get("quarantine", 0)
        print(f"no person holds {args.identity} (namespace without case; e-mail without case or spaces): no "
              f"person deleted" + (f"; {quarantined} quarantined records that quoted it removed" if quarantined
                                   else "") + f"; receipt {receipt['receipt_id']}")
        return 0
    print(f"forgot {receipt['people']} person(s) and {receipt['identities']} identities: "
          f"{sum(receipt['rows_removed'].values())} rows removed or redacted in {len(receipt['rows_removed'])} tables; "
          f"receipt {receipt['receipt_id']}; their old files go at the first vacuum after "
          f"{receipt['vacuum_after']:%Y-%m-%d %H:%M} UTC")
    return 0


def _read_profiles(args, cfg) -> int:
    from pipelines.publish import commands
    from pipelines.core.session import build_session

    if args.command == "show":
        commands.parse_identity(args.identity)   # a malformed identity fails before Spark starts
    spark = build_session(cfg)
    if not args.verbose:
        spark.sparkContext.setLogLevel("ERROR")
    if args.command == "changes":
        return commands.changes(spark, cfg, args.since_version, args.out)
    if args.command == "export":
        return commands.export(spark, cfg, args.out, args.since_version)
    return commands.show(spark, cfg, args.identity, args.json)


def _models(args, cfg) -> int:
    from pipelines.models import catalogue

    if args.action == "list":
        catalogue.print_entries(catalogue.entries(cfg), args.json)
        return 0
    from pipelines.models.specs import model_names
    from pipelines.core.session import build_session

    if args.model is not None and args.model not in model_names(cfg):
        raise BadInputError(f"--model {args.model!r} is not a model; known: {', '.join(model_names(cfg))}")
    spark = build_session(cfg)
    if not args.verbose:
        spark.sparkContext.setLogLevel("ERROR")
    problems = catalogue.validate(spark, cfg, args.model)
    for problem in problems:
        print(f"enrich models validate: error: {problem}", file=sys.stderr)
    if problems:
        return 2
    print("custom model definitions are valid" if args.model is None else f"{args.model}: definition is valid")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if args.run_date is None:
        args.run_date = datetime.now(timezone.utc).date()
    try:
        from pipelines.core.config import load_config

        cfg = load_config(args.env, args.conf, args.overrides)
        if args.command == "generate":
            return _generate(args, cfg)
        if args.command == "models":
            return _models(args, cfg)
        if getattr(args, "model", None) is not None or args.command in MODEL_USERS:
            from pipelines.models.specs import counting_models, propensity_specs
            # A wrong name or a bad model definition fails before Spark starts.
            propensity_specs(cfg, getattr(args, "model", None))
            counting_models(cfg)
        if args.command in READERS:
            return _read_profiles(args, cfg)
        if args.command in PRIVACY:
            return _privacy(args, cfg)
        return _run_steps(args, cfg)
    except EnrichError as err:
        if args.verbose:
            traceback.print_exc()
        print(f"enrich {args.command}: {'blocked' if err.exit_code == 3 else 'error'}: {err}", file=sys.stderr)
        return err.exit_code
    except Exception as err:  # the last line of defence: one line, code 1, traceback on request
        if args.verbose:
            traceback.print_exc()
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"enrich {args.command}: unexpected {type(err).__name__}: {first} "
              "(rerun with --verbose for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
