"""The commands of ``gnnddm``, one module each (each with ``main(argv) -> exit status``).

:mod:`~gnnddm.commands.hydra_app` runs a Hydra-configured command with the error contract of all of them:
one line ``gnnddm: error: ...`` and exit status 2 for bad input.
"""

#: command -> (module, usage line)
COMMANDS = {
    "train": ("gnnddm.commands.train",
              "train [+experiment=NAME] [key=value ...]      train (Hydra; -m for sweeps)"),
    "config": ("gnnddm.commands.config",
               "config validate [+experiment=NAME] [k=v ...]  check a composed config, run nothing"),
    "partition": ("gnnddm.commands.partition",
                  "partition [+experiment=NAME] [key=value ...]  build graph and partition, report quality"),
    "evaluate": ("gnnddm.commands.evaluate",
                 "evaluate output_dir=PATH [split=test|val]     score a trained model (PATH/model.pt)"),
    "predict": ("gnnddm.commands.predict",
                "predict output_dir=PATH init=DATE[,...] [leads=N] write forecasts as a CF file (netCDF/zarr)"),
    "report": ("gnnddm.commands.report",
               "report [options]                              tables and plots from MLflow runs"),
    "data": ("gnnddm.commands.data",
             "data info PATH | data synth ...               inspect or generate data files"),
}
