"""``okyaku model train|evaluate``: train an organization's models, or judge the pipeline on its
own data or on any CSV before trusting the scores."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from okyaku.errors import BadRequest

if TYPE_CHECKING:
    from okyaku.predictions.service import ModelTarget

TARGETS: tuple[ModelTarget, ...] = ("lead", "churn", "deal")


def register(subparsers: Any) -> None:
    model = subparsers.add_parser("model", help="train and evaluate prediction models")
    sub = model.add_subparsers(dest="model_command", required=True)

    train = sub.add_parser("train", help="train and store an organization's models (as the nightly job does)")
    train.add_argument("--org", required=True, type=uuid.UUID, help="organization id")
    train.add_argument("--target", choices=(*TARGETS, "all"), default="all")
    train.add_argument("--rescore", action="store_true", help="rescore every open record afterwards")
    train.add_argument("--json", action="store_true", help="print one JSON object")
    train.set_defaults(func=run_train)

    evaluate = sub.add_parser(
        "evaluate",
        help="hold out 20 %% and report ROC AUC, Brier, calibration by decile, top-decile lift, top factors",
        description="Either --target with --org (the organization's own history; time-based holdout where "
        "dates exist) or --csv with --label and --positive (each row an entity, the label its outcome; "
        "stratified holdout).",
    )
    evaluate.add_argument("--target", choices=TARGETS)
    evaluate.add_argument("--org", type=uuid.UUID, help="organization id (with --target)")
    evaluate.add_argument("--csv", metavar="FILE", help="a CSV of historical records")
    evaluate.add_argument("--label", metavar="COLUMN", help="the outcome column of the CSV")
    evaluate.add_argument("--positive", metavar="VALUE", help="the label value that counts as positive")
    evaluate.add_argument("--drop", nargs="*", default=[], metavar="COLUMN", help="columns to leave out (leaks, ids)")
    evaluate.add_argument("--seed", type=int, default=7)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from okyaku.predictions.training import TrainingConfig

    if args.csv:
        if not args.label or args.positive is None:
            raise BadRequest("--csv needs --label COLUMN and --positive VALUE")
        from okyaku.predictions.evaluation import evaluate_csv

        try:
            report = evaluate_csv(args.csv, label=args.label, positive=args.positive, drop=args.drop, seed=args.seed)
        except (OSError, ValueError) as error:
            raise BadRequest(str(error)) from error
        report = {"source": args.csv, **report}
    elif args.target and args.org:
        from okyaku.predictions.service import evaluate_target

        runtime = _runtime()
        with runtime.transaction(args.org) as session:
            report = evaluate_target(session, args.target, TrainingConfig(seed=args.seed), datetime.now(UTC))
        report = {"organization_id": str(args.org), "target": args.target, **report}
    else:
        raise BadRequest("give --csv FILE --label COLUMN --positive VALUE, or --target TARGET --org ORG_ID")
    _print(report, args.json, _print_evaluation)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from okyaku.predictions.service import PredictionService

    service = PredictionService(_runtime())
    targets: tuple[ModelTarget, ...] = TARGETS if args.target == "all" else (args.target,)
    result: dict[str, Any] = {"organization_id": str(args.org), "models": [], "rescored": {}}
    for target in targets:
        result["models"] += [m.as_dict() for m in service.train(args.org, target)]
        if args.rescore:
            result["rescored"][target] = service.rescore_all(args.org, target)
    _print(result, args.json, _print_training)
    return 0


def _runtime() -> Any:
    from okyaku.config import get_settings
    from okyaku.runtime import Runtime

    settings = get_settings()
    if not settings.database_url:
        raise BadRequest("set DATABASE_URL to the application's connection URL")
    return Runtime(settings)


def _print(report: dict[str, Any], as_json: bool, human: Any) -> None:
    if as_json:
        json.dump(report, sys.stdout, default=str)
        sys.stdout.write("\n")
    else:
        human(report)


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _print_evaluation(report: dict[str, Any]) -> None:
    print(f"method       {report['method']} ({report.get('algorithm')})")
    print(f"examples     {report['n_examples']} ({report['n_positive']} positive)")
    print(f"train/test   {report['n_train']} / {report['n_test']}   holdout: {report.get('holdout', 'n/a')}")
    print(f"ROC AUC      {_fmt(report.get('auc'))}")
    print(f"Brier        {_fmt(report.get('brier'), 4)}   (base rate {_fmt(report.get('base_rate'))})")
    print(f"lift top 10% {_fmt(report.get('lift_top_decile'), 2)}")
    if report.get("reason"):
        print(f"prior        {report['reason']}")
    deciles = report.get("calibration_by_decile") or []
    if deciles:
        print("\ncalibration by decile   predicted  observed      n")
        for d in deciles:
            predicted, observed = d["mean_predicted"], d["observed_rate"]
            print(f"  {d['decile']:>2}{'':20}{predicted:>8.3f}  {observed:>8.3f}  {d['n']:>5}")
    factors = report.get("top_factors") or []
    if factors:
        print("\ntop factors (mean score points moved)")
        for f in factors:
            print(f"  {f['mean_abs_impact']:>6.2f}  {f['feature']}  [{f['group']}]")
    excluded = report.get("excluded_features") or []
    if excluded:
        print("\nleft out")
        for e in excluded:
            print(f"  {e['feature']}: {e['reason']}")


def _print_training(result: dict[str, Any]) -> None:
    for model in result["models"]:
        metrics = model["metrics"]
        print(
            f"{model['target']:<12} v{model['version']:<3} {model['method']:<6} {model['algorithm']:<18} "
            f"n={model['n_examples']:<6} auc={_fmt(metrics.get('auc'))} brier={_fmt(metrics.get('brier'), 4)}"
        )
    for target, count in result["rescored"].items():
        print(f"rescored {count} records for {target}")
