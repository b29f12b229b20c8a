"""Every run folder a thesis recipe reads (conf/experiment: `stage.inputs.*`, the CAMs it is evaluated
against, a checkpoint) is the folder another recipe writes (by hand, or as a step of `pipeline=wsss`, under
the pipeline's run_name), and the one conf/pipeline/wsss.yaml feeds it in that recipe's chain: typed by hand
after the pipeline's earlier steps, a step reads what the pipeline would give it. The recipes name those
folders through `${wsss.run_of:<stage>[,<run_name>[,<backbone>]]}`; a wrong stage, run name or backbone
there reads a folder no recipe fills, or another chain's."""
import re
from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from tests.helpers import ROOT
from wsss.stage_contract import written_artifacts

RUNS = "/runs"
RECIPES = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
# producers no recipe file names on its own: coco14_rs101_poc's ordinary classifier, as its header says
EXTRA_PRODUCERS = {"coco14_rs269 backbone=resnest101": ["experiment=coco14_rs269", "backbone=resnest101"]}
FED = re.compile(r"^(stage\.[\w.]+)=\$\{(?:oc\.select:)?outputs\.(\w+)")


@pytest.fixture(scope="module")
def composed(module_tmp) -> dict[str, dict]:
    from tests.helpers import compose_config

    data = module_tmp("data")
    out = {}
    commands = {**{name: [f"experiment={name}"] for name in RECIPES}, **EXTRA_PRODUCERS}
    for name, overrides in commands.items():
        cfg = compose_config(Path(RUNS) / "x", data, overrides, tiny=False)
        out[name] = OmegaConf.to_container(cfg, resolve=True)
    return out


def run_folder(plain: dict, run_name: str | None = None) -> str:
    """Where `python run.py experiment=<recipe> [run_name=...]` writes (conf/hydra/default.yaml's run.dir);
    a pipeline step runs with its pipeline's run_name (wsss/pipeline.py)."""
    return f"{RUNS}/{plain['stage']['name']}/{plain['dataset']['name']}/{plain['backbone']['name']}/" \
           f"{run_name or plain['run_name']}"


def paths_read(node, key: str = "stage"):
    """(dotted key, value) of every string under the stage config that points into the runs folder."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths_read(v, f"{key}.{k}")
    elif isinstance(node, str) and node.startswith(RUNS + "/"):
        yield key, node


def what_it_writes(plain: dict) -> set[str]:
    cls = get_class(plain["stage"]["_target_"])
    return {a.kind for a in written_artifacts(cls, list(cls.tasks))} | {"checkpoints"}


def test_every_folder_a_recipe_reads_is_one_a_recipe_writes(composed):
    writers = {run_folder(p): (name, what_it_writes(p)) for name, p in composed.items()}
    for chain, steps in chains().items():  # the same recipes run as steps of `pipeline=wsss experiment=<chain>`
        chain_run = composed[chain]["run_name"]
        writers.update({run_folder(composed[r], chain_run): (f"{r} in {chain}", what_it_writes(composed[r]))
                        for r, _ in steps})
    checked = 0
    for name, plain in composed.items():
        for key, path in paths_read(plain["stage"]):
            folder, _, inside = path.rpartition("/")
            while folder and folder not in writers:
                folder, _, up = folder.rpartition("/")
                inside = f"{up}/{inside}"
            assert folder, f"{name}: {key}={path} is the run folder of no recipe in conf/experiment"
            producer, kinds = writers[folder]
            assert inside.split("/")[0] in kinds, f"{name}: {key}={path}: {producer} writes only {sorted(kinds)}"
            checked += 1
    assert checked >= 14  # the recipes' own input paths, besides the stage defaults they keep


def chains() -> dict[str, list[tuple[str, dict]]]:
    """{chain experiment: [(the recipe each step runs, the step)]} of conf/pipeline/wsss.yaml."""
    steps = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "pipeline" / "wsss.yaml"))["pipeline"]["steps"]
    names = {x for step in steps.values() for x in step.get("experiments") or {}}
    out = {}
    for chain in sorted(names):
        out[chain] = []
        for step in steps.values():
            recipe = (step.get("experiments") or {}).get(chain, chain)
            out[chain].append((recipe["experiment"] if isinstance(recipe, dict) else recipe, step))
    return out


def value_at(plain: dict, dotted: str):
    node = plain
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def test_a_recipe_typed_by_hand_reads_what_a_chain_feeds_it(composed):
    """A recipe several chains share (coco14_ccamh_rs269 after P-NOC or P-OC) reads what one of them feeds."""
    fed: dict[tuple[str, str], set[str]] = {}
    for chain, steps in chains().items():
        outputs: dict[str, str] = {}
        for recipe, step in steps:
            for override in step.get("overrides") or []:
                match = FED.match(override)
                if match and outputs.get(match[2]):
                    fed.setdefault((recipe, match[1]), set()).add(outputs[match[2]])
            run = run_folder(composed[recipe], composed[chain]["run_name"])
            outputs.update({k: f"{run}/{v}" for k, v in (step.get("outputs") or {}).items()})
    assert len(fed) >= 10
    for (recipe, key), values in sorted(fed.items()):
        assert value_at(composed[recipe], key) in values, f"{recipe}: {key}, fed {sorted(values)} in a pipeline"
