"""User code made explicit: `user:package.module:function`, the older form announced, standard-library and
neuronimp modules refused before anything is imported, import failures in one line."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from neuronimp.config import load_config
from neuronimp.errors import UsageError
from neuronimp.models import create_model, user_code_notice

MODULE = '''
from torch import nn

def make(width=4):
    return nn.Sequential(nn.Flatten(), nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 3))
'''


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path on sys.path, with modules `usercode_ok_test`, `usercode_syntax_test`, `usercode_raises_test`."""
    (tmp_path / "usercode_ok_test.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "usercode_syntax_test.py").write_text("def make(:\n    pass\n")
    (tmp_path / "usercode_raises_test.py").write_text("raise RuntimeError('no GPU\\nhere')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("usercode_ok_test", "usercode_syntax_test", "usercode_raises_test"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def test_explicit_and_old_forms_build_the_same_model(user_dir: Path) -> None:
    a = create_model("user:usercode_ok_test:make", input_shape=[2, 3], width=5)
    b = create_model("usercode_ok_test:make", input_shape=[2, 3], width=5)
    assert a.name == "user:usercode_ok_test:make" and a.num_classes == b.num_classes == 3
    assert a.model[1].out_features == b.model[1].out_features == 5


def test_notice_text() -> None:
    assert user_code_notice("user:mypkg.models:make") == "model 'user:mypkg.models:make' imports user code: mypkg.models"
    assert user_code_notice("mypkg.models:make") == ("model 'mypkg.models:make' imports user code: mypkg.models "
                                                     "(write 'user:mypkg.models:make' to say so explicitly)")
    assert user_code_notice("digits_cnn") is None and user_code_notice("timm/resnet18") is None


@pytest.mark.parametrize(("name", "needle"), [
    ("os:system", "'os' is part of Python's standard library, not a model factory"),
    ("user:subprocess:run", "'subprocess' is part of Python's standard library"),
    ("user:this:x", "'this' is part of Python's standard library"),  # importing `this` would print the Zen
    ("user:neuronimp.models.small:digits_cnn", "'neuronimp.models.small' is part of neuronimp; use a registered"),
    ("user:mypkg.models", "a user model is written 'user:package.module:function'"),
    ("user:my-pkg:make", "is not a dotted module path and attribute"),
])
def test_refused_before_any_import(name: str, needle: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "this", raising=False)
    with pytest.raises(UsageError) as err:
        create_model(name, input_shape=[1])
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert "this" not in sys.modules  # nothing was imported, so nothing ran


def test_config_refuses_stdlib_and_announces_user_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('model: {name: "os:system"}\n')
    with pytest.raises(UsageError, match=rf"^{bad}: model\.name: model 'os:system': 'os' is part of Python's"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text('model: {name: "user:mypkg.models:make"}\n')
    with pytest.warns(UserWarning, match=r"^model 'user:mypkg\.models:make' imports user code: mypkg\.models$"):
        load_config(good)  # validating does not import the module (mypkg does not even exist)


def test_import_failures_are_one_line(user_dir: Path) -> None:
    with pytest.raises(UsageError) as err:
        create_model("user:usercode_syntax_test:make", input_shape=[1])
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"model 'user:usercode_syntax_test:make': {user_dir / 'usercode_syntax_test.py'}:1: "
                          "syntax error (")
    with pytest.raises(UsageError) as err:
        create_model("user:usercode_raises_test:make", input_shape=[1])
    assert str(err.value) == ("model 'user:usercode_raises_test:make': importing 'usercode_raises_test' raised "
                              "RuntimeError: no GPU here")
