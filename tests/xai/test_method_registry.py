"""The CAM methods' registry is found, not listed: each method's module of wsss/xai/methods names it, and
the stage, the tables and the documentation read the registry."""
import re
import sys

import pytest

from tests.helpers import ROOT
from wsss.xai import methods

THESIS_METHODS = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "scorecam": "Score-CAM",
                  "ablationcam": "Ablation-CAM", "layercam": "LayerCAM", "minmax_cam": "MinMax-CAM",
                  "d_minmax_cam": "D-MinMax-CAM", "minmax_gradcam": "MinMax-Grad-CAM",
                  "d_minmax_gradcam": "D-MinMax-Grad-CAM"}
NEW_METHOD = '''
from wsss.xai.methods.cam import CAM


class {cls}(CAM):
    """A throwaway method of this test."""

    name, display_name = "{name}", "{display}"
'''


def test_the_registry_holds_every_method_with_its_heading():
    from wsss.xai.report import DISPLAY_NAMES

    assert {name: cls.display_name for name, cls in methods.REGISTRY.items()} == THESIS_METHODS
    assert DISPLAY_NAMES == THESIS_METHODS
    assert all(cls.name == name for name, cls in methods.REGISTRY.items())


@pytest.fixture
def extra_module(tmp_path, monkeypatch):
    """A module dropped beside the package's own, found the way the package's modules are."""
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])

    written = []

    def write(module: str, cls: str, name: str, display: str):
        (tmp_path / f"{module}.py").write_text(NEW_METHOD.format(cls=cls, name=name, display=display))
        written.append(f"wsss.xai.methods.{module}")

    yield write
    for module in written:  # its class leaves CamMethod's subclasses with it
        sys.modules.pop(module, None)


def test_a_new_method_is_its_module_alone(extra_module):
    extra_module("throwaway_cam", "ThrowawayCAM", "throwaway_cam", "Throwaway-CAM")
    found = methods.discovered_methods()
    assert found["throwaway_cam"].__module__ == "wsss.xai.methods.throwaway_cam"
    assert found["throwaway_cam"].display_name == "Throwaway-CAM"
    assert {k: v for k, v in found.items() if k != "throwaway_cam"} == methods.REGISTRY


def test_a_name_taken_twice_is_refused_naming_both_classes(extra_module):
    extra_module("second_cam", "SecondCAM", "cam", "CAM again")
    with pytest.raises(ValueError, match=r"'cam' is taken by both wsss\.xai\.methods\.cam\.CAM and "
                                         r"wsss\.xai\.methods\.second_cam\.SecondCAM"):
        methods.discovered_methods()


def test_the_library_page_lists_every_method():
    page = (ROOT / "docs" / "xai.md").read_text()
    listed = page[page.index("`wsss.xai.methods.REGISTRY` names them"):].split("Options", 1)[0]
    assert set(re.findall(r"`(\w+)`", listed)) == set(methods.REGISTRY)
