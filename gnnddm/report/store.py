"""Reading runs from MLflow for the report; the report's only module that talks to MLflow.

It turns runs into :class:`~gnnddm.report.records.RunRecord` snapshots, copies ``partition_map.png``
artifacts, and attaches the finished report to a sweep's parent run.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from gnnddm.errors import GnnddmError
from gnnddm.report.records import HISTORIES, RunRecord

SWEEP_KIND_TAG = "gnnddm.kind"
PARENT_TAG = "mlflow.parentRunId"


def _is_training_run(run) -> bool:
    """Sweep parents and runs of other commands (``gnnddm.command`` other than train) are not compared."""
    tags = run.data.tags
    return tags.get(SWEEP_KIND_TAG) != "sweep" and tags.get("gnnddm.command", "train") == "train"


class RunStore:
    """An MLflow tracking store, read through :class:`mlflow.tracking.MlflowClient`.

    Parameters
    ----------
    uri : str
        Tracking URI. A ``sqlite:///`` path must exist: reading must not create an empty store in
        the wrong directory.
    """

    def __init__(self, uri: str):
        from mlflow.tracking import MlflowClient

        if uri.startswith("sqlite:///"):
            db = Path(uri[len("sqlite:///") :])
            if not db.is_file():
                raise GnnddmError(
                    f"--tracking-uri {uri}: no MLflow store at {db.resolve()}; run in the directory that "
                    "holds mlflow.db or pass --tracking-uri"
                )
            logging.getLogger("alembic").setLevel(logging.WARNING)
        self.uri = uri
        self._client = MlflowClient(tracking_uri=uri)

    # ------------------------------------------------------------------ selecting runs
    def experiment_runs(self, name: str) -> list[RunRecord]:
        """The training runs of an experiment (sweep parents left out), oldest first."""
        exp = self._client.get_experiment_by_name(name)
        if exp is None:
            names = sorted(e.name for e in self._client.search_experiments())
            raise GnnddmError(
                f"--experiment {name!r}: no such experiment in {self.uri}; existing: {', '.join(names) or 'none'}"
            )
        runs = [r for r in self._search([exp.experiment_id]) if _is_training_run(r)]
        if not runs:
            raise GnnddmError(f"--experiment {name!r}: the experiment holds no training runs")
        return self._records(runs)

    def child_runs(self, parent_id: str) -> list[RunRecord]:
        """The runs of one sweep (children of ``parent_id``), oldest first."""
        parent = self._get(parent_id, "--parent")
        runs = [r for r in self._search([parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'")
                if _is_training_run(r)]
        if not runs:
            raise GnnddmError(f"--parent {parent_id}: the run {parent.info.run_name!r} has no child runs")
        return self._records(runs)

    def runs_by_id(self, run_ids: list[str], option: str = "--runs") -> list[RunRecord]:
        """The named runs, in the order given."""
        return [self._record(self._get(i, option)) for i in run_ids]

    def _get(self, run_id: str, option: str):
        from mlflow.exceptions import MlflowException

        try:
            return self._client.get_run(run_id)
        except MlflowException:
            raise GnnddmError(f"{option}: no run with id {run_id!r} in {self.uri}") from None

    def _search(self, experiment_ids: list[str], filter_string: str = "") -> list:
        runs, token = [], None
        while True:
            page = self._client.search_runs(
                experiment_ids, filter_string, max_results=1000, order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _records(self, runs: list) -> list[RunRecord]:
        return [self._record(r) for r in runs]

    def _record(self, run) -> RunRecord:
        run_id = run.info.run_id
        histories = {}
        for name in HISTORIES:
            if name in run.data.metrics:
                hist = self._client.get_metric_history(run_id, name)
                histories[name] = ([m.step for m in hist], [m.value for m in hist])
        return RunRecord(
            run_id=run_id,
            name=run.info.run_name or run_id[:8],
            status=str(run.info.status).lower(),
            start_time=int(run.info.start_time or 0),
            tags=dict(run.data.tags),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            histories=histories,
            parent_id=run.data.tags.get(PARENT_TAG),
            artifacts=tuple(a.path for a in self._client.list_artifacts(run_id)),
        )

    # ------------------------------------------------------------------ artifacts
    def copy_artifact(self, record: RunRecord, path: str, dest: Path) -> Path | None:
        """Download artifact ``path`` of a run to ``dest``; None if the run has no such artifact."""
        if path not in record.artifacts:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            local = self._client.download_artifacts(record.run_id, path, tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, dest)
        return dest

    def attach_report(self, run_id: str, files: list[Path], root: Path, artifact_path: str = "report") -> None:
        """Log ``files`` (inside ``root``) as artifacts of ``run_id``, under ``artifact_path`` + their folder."""
        for f in files:
            sub = f.parent.relative_to(root).as_posix()
            self._client.log_artifact(run_id, str(f), artifact_path if sub == "." else f"{artifact_path}/{sub}")

    def run_name(self, run_id: str) -> str:
        return self._get(run_id, "--parent").info.run_name or run_id[:8]
