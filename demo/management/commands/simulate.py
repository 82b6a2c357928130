"""`manage.py simulate`: run the demo shop forward with the whole closed loop and compare with the truth."""
from __future__ import annotations

import logging
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from crm_plugin.errors import CrmError
from demo.simulation import (
    SIM_MODELS,
    SimulationConfig,
    simulation_report_text,
    simulation_run,
    simulation_write_json,
)


class Command(BaseCommand):
    help = ("Simulate D days of the shop with scoring, alerts (with a control group), simulated account managers, "
            "outcomes and weekly retraining; print true vs measured lift. Run it in a separate database.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=120)
        parser.add_argument("--customers", type=int, default=5000)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--follow-share", type=float, default=SimulationConfig.follow_share,
                            help="Share of the simulated managers' actions that follow the suggested next-best action.")
        parser.add_argument("--explore-share", type=float, default=SimulationConfig.explore_share,
                            help="Of the other actions, the share where a manager tries an action at random "
                                 "instead of their habit (0 = habit only).")
        parser.add_argument("--model", choices=SIM_MODELS, default=SimulationConfig.model,
                            help="Who scores: 'logreg' (default) / 'lightgbm' = the product's weekly training and daily "
                                 "scoring on the event log; 'tiny-bert' = the product's bert family on a tiny random "
                                 "checkpoint, for speed; 'fast' = the simulator's own logistic regression (seconds a day).")
        parser.add_argument("--json", type=Path, default=None, help="Also write the results as JSON here.")
        parser.add_argument("--plot", type=Path, default=None, help="Write an SVG plot of true vs measured lift here.")
        parser.add_argument("--replace", action="store_true",
                            help="Replace a previous demo shop / simulation in this database (never imported data).")

    def handle(self, *args, **options):
        if options["days"] < 1 or options["customers"] < 50:
            raise CommandError("Use --days of at least 1 and --customers of at least 50.")
        logging.getLogger("celery").setLevel(logging.WARNING)
        try:
            config = SimulationConfig(days=options["days"], customers=options["customers"], seed=options["seed"],
                                      follow_share=options["follow_share"], explore_share=options["explore_share"],
                                      model=options["model"])
            result = simulation_run(config=config, replace=options["replace"], plot_path=options["plot"],
                                    out=lambda line: self.stdout.write(line))
        except CrmError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write("")
        self.stdout.write(simulation_report_text(result.data))
        if options["json"]:
            simulation_write_json(result.data, options["json"])
            self.stdout.write(f"results written to {options['json']}")
        if options["plot"]:
            self.stdout.write(f"plot written to {options['plot']}")
