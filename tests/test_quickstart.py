"""The quickstart on the real ERA5 sample learns something: it beats persistence."""

from __future__ import annotations

import pytest

from gnnddm.config import compose
from gnnddm.training import train


@pytest.mark.slow
def test_quickstart_beats_persistence_on_real_era5(tmp_path):
    summary = train(compose(["+experiment=quickstart", "trainer.progress=false", "tracking.enabled=false",
                             f"output_dir={tmp_path}"]))
    model = summary["final"]["val_rmse"]
    persistence = summary["baseline"]["val_rmse"]
    assert summary["baseline"]["name"] == "persistence"
    # t2m in K: the 7-8 hourly change is dominated by the diurnal cycle, which the local-time features
    # let the model learn; persistence cannot.
    assert model["t2m"] < 0.95 * persistence["t2m"], (model, persistence)
    for var in ("msl", "u10", "v10"):
        assert model[var] < persistence[var], (var, model, persistence)
