"""`dataset=<other>` on the command line against an experiment's data set: a warning naming the recipe
values that still apply (epochs, lr, sizes, run name), nothing when the two agree or no dataset= is typed."""
from pathlib import Path

from wsss.app import CONF_DIR
from wsss.recipe_check import contradicted_dataset

CONF = Path(CONF_DIR)


def test_a_typed_data_set_against_the_experiments_names_the_values_it_keeps():
    message = contradicted_dataset("synthetic", "voc12", ["experiment=synthetic", "dataset=voc12"], CONF)
    assert "dataset=voc12" in message and "experiment=synthetic's data set (synthetic)" in message
    assert "stage.lr=0.1" in message and "stage.batch_size=16" in message and "num_workers=2" in message


def test_an_included_experiments_values_are_named_with_the_includers_on_top():
    message = contradicted_dataset("synthetic_full", "voc12", ["experiment=synthetic_full", "dataset=voc12"],
                                   CONF)
    assert "(synthetic)" in message and "run_name=full" in message and "stage.max_epochs=12" in message
    assert "stage.max_epochs=${" not in message  # synthetic's own value is replaced by the includer's
    recipe = contradicted_dataset("voc12_rs269_pnoc_ls", "coco14", ["dataset=coco14"], CONF)
    assert "(voc12)" in recipe and "run_name=rs269_pnoc_ls" in recipe and "stage.max_epochs=15" in recipe


def test_no_warning_when_they_agree_or_nothing_is_typed():
    assert contradicted_dataset("synthetic", "synthetic", ["experiment=synthetic", "dataset=synthetic"],
                                CONF) is None
    # debug=tiny replaces the data set by its own choice, not the user's: no dataset= typed, no warning
    assert contradicted_dataset("synthetic", "synthetic_tiny", ["experiment=synthetic", "debug=tiny"],
                                CONF) is None
    assert contradicted_dataset(None, "voc12", ["dataset=voc12"], CONF) is None
    assert contradicted_dataset("synthetic", "voc12", ["experiment=synthetic", "dataset=voc12",
                                                       "dataset=synthetic"], CONF) is None


def test_run_py_warns_before_the_run(monkeypatch, caplog, tmp_path):
    import wsss.tasks
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from wsss.app import run_command

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", return_hydra_config=True,
                      overrides=["experiment=synthetic", "dataset=voc12", f"paths.root={tmp_path}",
                                 f"paths.run_dir={tmp_path}/run"])
    GlobalHydra.instance().clear()
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # a task function's config: Hydra hands it over without its own node
    monkeypatch.setattr(wsss.tasks, "run", lambda cfg: {})
    try:
        with caplog.at_level("WARNING", logger="wsss"):
            run_command(cfg)
    finally:
        HydraConfig.instance().cfg = None  # later tests must not read this command's overrides
    assert any("the rest of that recipe still applies" in r.getMessage() for r in caplog.records)
