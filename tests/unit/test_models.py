"""Model zoo: canonical GoogLeNet equals torchvision's, layers and aliases, weights loading, small nets, Kim CNN."""
from __future__ import annotations

import struct
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neuronimp.errors import UsageError
from neuronimp.models import (MODELS, ModelBundle, canonicalise, checkpoint_module, create_model, list_layers,
                              load_weights, resolve_layer)
from neuronimp.models.canonical import assert_canonical, call_counts
from neuronimp.models.kim_cnn import apply_max_norm
from neuronimp.models.weights import fetch


@pytest.fixture(scope="module")
def googlenet() -> ModelBundle:
    """One GoogLeNet bundle for the read-only layer tests (random weights)."""
    return create_model("googlenet")


# ---------------------------------------------------------------- GoogLeNet / Inception

@pytest.mark.parametrize("transform_input", [False, True])
def test_googlenet_equals_torchvision(transform_input: bool) -> None:
    from torchvision.models import googlenet as tv_googlenet

    torch.manual_seed(0)
    ref = tv_googlenet(weights=None, aux_logits=False, init_weights=True, transform_input=transform_input)
    ours = create_model("googlenet", transform_input=transform_input).model
    assert list(ours.state_dict()) == list(ref.state_dict())
    # random batch-norm statistics, so the comparison exercises every affine term
    state = {k: (v.uniform_(0.5, 1.5) if "running_var" in k else v.normal_() if "running_mean" in k else v)
             for k, v in ref.state_dict().items()}
    ref.load_state_dict(state)
    ours.load_state_dict(ref.state_dict())
    ref, ours = ref.double().eval(), ours.double().eval()
    x = torch.randn(2, 3, 96, 96, dtype=torch.float64)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert expected.shape == (2, 1000)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    assert expected.abs().max() > 1e-3  # not a trivially zero output


def test_googlenet_is_canonical(googlenet: ModelBundle) -> None:
    model = googlenet.model
    assert not model.training
    assert_canonical(model)
    counts = call_counts(model, torch.zeros(1, 3, 64, 64))
    relus = [n for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 57  # 3 stem convs + 9 blocks x 6 convs: every ReLU is a module the hooks see
    assert all(counts[n] == 1 for n in relus)
    assert all(p.requires_grad for p in model.parameters())


def test_googlenet_layers(googlenet: ModelBundle) -> None:
    layers = {info.name: info for info in list_layers(googlenet)}
    assert layers["inception4d"].alias == "mixed4d"
    assert layers["inception4d"].units == 528 and layers["inception4d"].shape == (528, 14, 14)
    assert layers["inception5b"].units == 1024 and layers["fc"].shape == (1000,)
    assert "inception4d.branch2.1.relu" not in layers  # leaves are addressable but not listed
    assert googlenet.default_layer == "inception4d" and googlenet.input_shape == (3, 224, 224)


def test_resolve_layer(googlenet: ModelBundle) -> None:
    assert resolve_layer(googlenet, "mixed4d") == "inception4d"
    assert resolve_layer(googlenet, "mixed3a") == "inception3a"
    assert resolve_layer(googlenet, "mixed5b") == "inception5b"
    assert resolve_layer(googlenet, "inception4d.branch2.1.relu") == "inception4d.branch2.1.relu"
    with pytest.raises(UsageError, match=r"unknown layer 'inceptoin4d' for model 'googlenet'.*did you mean "
                                         r"'inception4d'") as err:
        resolve_layer(googlenet, "inceptoin4d")
    assert str(err.value).index("conv1") < str(err.value).index("mixed4d")  # top-level blocks listed first
    assert "\n" not in str(err.value)


def test_transforms(googlenet: ModelBundle) -> None:
    from PIL import Image

    image = Image.fromarray(np.full((300, 400, 3), 128, dtype=np.uint8))
    x = googlenet.transform(image)
    assert x.shape == (3, 224, 224)
    assert torch.allclose(x[0, 0, 0], torch.tensor((128 / 255 - 0.485) / 0.229), atol=1e-5)


def test_inception_v3_tv_equals_torchvision() -> None:
    from torchvision.models.inception import Inception3

    torch.manual_seed(0)
    bundle = create_model("inception_v3_tv")
    ref = Inception3(aux_logits=True, init_weights=False)
    state = ref.state_dict()
    assert set(bundle.model.state_dict()) == {k for k in state if not k.startswith("AuxLogits.")}
    bundle.model.load_state_dict({k: v for k, v in state.items() if not k.startswith("AuxLogits.")})
    ref.aux_logits, ref.AuxLogits = False, None
    ref, ours = ref.double().eval(), bundle.model.double().eval()
    x = torch.randn(1, 3, 80, 80, dtype=torch.float64)  # the smallest input v3 takes: a cheap comparison
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-6, rtol=0)
    assert_canonical(ours)
    counts = call_counts(ours, x)
    relus = [n for n, m in ours.named_modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 94 and all(counts[n] == 1 for n in relus)  # one module per conv, none functional
    assert isinstance(ours.Mixed_6a.pool, nn.MaxPool2d) and isinstance(ours.Mixed_6e.pool, nn.AvgPool2d)
    bundle.model.float()
    layers = {info.name: info for info in list_layers(bundle)}  # the one forward at 299 x 299
    assert layers["Mixed_6e"].units == 768 and layers["Mixed_6e"].alias == "mixed6e"
    assert layers["Mixed_7c"].shape == (2048, 8, 8)
    assert resolve_layer(bundle, "mixed6e") == "Mixed_6e" == bundle.default_layer
    assert bundle.transform.transforms[1].size == (299, 299)


def test_timm_models_are_canonicalised() -> None:
    import timm

    assert any(getattr(m, "inplace", False) for m in timm.create_model("inception_v3").modules())
    v3 = create_model("inception_v3_timm")
    assert_canonical(v3.model)
    assert resolve_layer(v3, "mixed6e") == "Mixed_6e" and v3.input_shape == (3, 299, 299)
    resnet = create_model("timm/resnet18", num_classes=7)
    assert_canonical(resnet.model)
    assert resnet.num_classes == 7 and resnet.default_layer == "layer4"
    assert resnet.transform is not None
    with pytest.raises(UsageError, match="did you mean 'resnet18'"):
        create_model("timm/resnet_18")


# ---------------------------------------------------------------- canonical form, registry

def test_canonicalise_turns_off_inplace_and_refuses_shared_relu() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(inplace=True), nn.Dropout(inplace=True))
    canonicalise(model)
    assert not model[1].inplace and not model[2].inplace
    relu = nn.ReLU()
    shared = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)
    with pytest.raises(UsageError, match=r"1 = 3.*one module per call site"):
        canonicalise(shared)


def test_create_model_errors() -> None:
    assert {"googlenet", "inception_v3_tv", "kim_cnn", "mnist_mlp", "digits_cnn"} <= set(MODELS.names())
    with pytest.raises(UsageError, match="did you mean 'googlenet'"):
        create_model("googlenett")
    with pytest.raises(UsageError, match=r"takes no option 'widht'; allowed: width"):
        create_model("mnist_mlp", widht=3)


# ---------------------------------------------------------------- weights

def test_checkpoint_roundtrip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = create_model("digits_cnn").model
    x = torch.randn(3, 1, 8, 8)
    for i, wrap in enumerate([lambda s: s, lambda s: {"model": s, "epoch": torch.tensor(3)},
                              lambda s: {"state_dict": s}]):
        path = tmp_path / f"ckpt{i}.pt"
        torch.save(wrap(source.state_dict()), path)
        loaded = create_model("digits_cnn", weights=str(path)).model
        with torch.no_grad():
            assert torch.equal(loaded(x), source(x))


def test_checkpoint_with_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "code.pt"
    torch.save({"model": create_model("digits_mlp").model}, path)  # pickles the nn.Module classes
    with pytest.raises(UsageError, match=r"carries code.*weights_only=True.*state_dict\(\)"):
        create_model("digits_mlp", weights=str(path))


def test_truncated_missing_and_mismatched_checkpoints(tmp_path: Path) -> None:
    state = create_model("digits_mlp").model.state_dict()
    good = tmp_path / "good.pt"
    torch.save(state, good)
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match="corrupt or truncated"):
        create_model("digits_mlp", weights=str(tmp_path / "cut.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UsageError, match="corrupt or truncated"):
        create_model("digits_mlp", weights=str(tmp_path / "junk.pt"))
    with pytest.raises(UsageError, match="not found"):
        create_model("digits_mlp", weights=str(tmp_path / "absent.pt"))
    with pytest.raises(UsageError, match=r"does not fit model 'digits_mlp'.*shape mismatch.*fc1.weight"):
        create_model("digits_mlp", weights=str(good), width=32)
    torch.save({"extra.weight": torch.zeros(1), **{k: v for k, v in state.items() if k != "fc3.bias"}}, good)
    with pytest.raises(UsageError, match=r"missing keys fc3\.bias; unexpected keys extra\.weight"):
        create_model("digits_mlp", weights=str(good))
    with pytest.raises(UsageError, match="has no 'imagenet' weights"):
        create_model("mnist_mlp", weights="imagenet")


def test_googlenet_checkpoint_with_aux_heads_loads(tmp_path: Path) -> None:
    from torchvision.models import googlenet as tv_googlenet

    ref = tv_googlenet(weights=None, aux_logits=True, init_weights=False)  # like torchvision's released file
    path = tmp_path / "googlenet.pth"
    torch.save(ref.state_dict(), path)
    ours = create_model("googlenet", weights=str(path)).model
    assert torch.equal(ours.inception4d.branch1.conv.weight, ref.inception4d.branch1.conv.weight)


def test_failed_download_suggests_a_local_checkpoint() -> None:
    def offline() -> dict:
        raise OSError("<urlopen error [Errno -3] Temporary failure\nin name resolution>")

    with pytest.raises(UsageError, match=r"could not be fetched.*local checkpoint path") as err:
        fetch("googlenet", offline)
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="could not be fetched"):
        load_weights(nn.Linear(2, 2), "imagenet", offline, name="toy")


# ---------------------------------------------------------------- small nets

@pytest.mark.parametrize("name, shape, default, units", [
    ("digits_mlp", (1, 8, 8), "relu2", 64), ("digits_cnn", (1, 8, 8), "relu2", 32),
    ("mnist_mlp", (1, 28, 28), "relu2", 512), ("mnist_cnn", (1, 28, 28), "relu2", 64)])
def test_small_nets(name: str, shape: tuple[int, ...], default: str, units: int) -> None:
    bundle = create_model(name)
    assert bundle.input_shape == shape and bundle.default_layer == default and not bundle.model.training
    assert bundle.model(torch.zeros(5, *shape)).shape == (5, 10)
    layers = {info.name: info for info in list_layers(bundle)}
    assert layers[default].units == units
    assert_canonical(bundle.model)


def test_small_net_options() -> None:
    assert create_model("mnist_mlp", width=16).model.fc2.weight.shape == (16, 16)
    assert create_model("mnist_cnn", num_classes=3).model.fc2.out_features == 3
    assert list_layers(create_model("mnist_cnn"))[2].shape == (32, 28, 28)  # relu1
    with pytest.raises(UsageError, match="positive integer"):
        create_model("digits_mlp", width=0)


# ---------------------------------------------------------------- Kim CNN

VOCAB = ["<pad>", "good", "bad", "movie", "plot", "unseen"]


def test_kim_cnn_shapes_and_split() -> None:
    torch.manual_seed(0)
    bundle = create_model("kim_cnn", vocab_size=20, embed_dim=8, max_len=12)
    ids = torch.randint(1, 20, (4, 12))
    ids[:, 9:] = 0
    emb = bundle.embed(ids)
    assert emb.shape == (4, 1, 12, 8)
    assert torch.equal(emb[:, :, 9:], torch.zeros(4, 1, 3, 8))  # padding embeds to zero
    assert bundle.model(emb).shape == (4, 2)
    layers = {info.name: info for info in list_layers(bundle)}
    assert layers["features"].units == 300 and layers["features"].shape == (300,)
    assert layers["pool.relu4"].units == 100 and layers["pool.relu4"].shape == (100, 9, 1)
    assert bundle.default_layer == "features" and resolve_layer(bundle, "penultimate") == "features"
    weight = bundle.embed.non_static.weight
    assert weight[1:].abs().max() <= 0.25 and weight[1:].max() - weight[1:].min() > 0.4  # U[-0.25, 0.25]
    assert weight.requires_grad and bundle.input_shape == (1, 12, 8)
    assert_canonical(bundle.model)


def test_kim_cnn_features_are_max_over_time() -> None:
    torch.manual_seed(0)
    bundle = create_model("kim_cnn", vocab_size=10, embed_dim=4, max_len=6, windows=(2,), maps=3)
    x = torch.randn(2, 1, 6, 4, dtype=torch.float64)
    model = bundle.model.double()
    conv = model.pool.conv2
    expected = torch.stack([torch.stack([torch.relu((x[n, 0, t:t + 2] * conv.weight[m, 0]).sum() + conv.bias[m])
                                         for t in range(5)]).max() for n in range(2) for m in range(3)])
    assert torch.allclose(model.features(model.pool(x)).flatten(), expected)


def test_kim_cnn_max_norm() -> None:
    model = create_model("kim_cnn", vocab_size=10, embed_dim=4, max_len=6).model
    with torch.no_grad():
        model.fc.weight[0].fill_(1.0)    # norm sqrt(300) = 17.3 -> rescaled to 3
        model.fc.weight[1].fill_(0.01)   # norm 0.17 -> unchanged
    apply_max_norm(model, 3.0)
    norms = model.fc.weight.norm(dim=1)
    assert torch.allclose(norms[0], torch.tensor(3.0), atol=1e-4)
    assert torch.allclose(norms[1], torch.tensor(0.01 * 300 ** 0.5), atol=1e-6)
    assert torch.allclose(model.fc.weight[0], torch.full((300,), 3.0 / 300 ** 0.5), atol=1e-6)


VECTORS = {"good": [0.5, -1.0, 2.0], "bad": [1.5, 0.0, -0.5], "movie": [0.25, 0.75, 1.0], "other": [9.0, 9.0, 9.0]}


def _write(path: Path, fmt: str) -> Path:
    """Write VECTORS as word2vec text ('w2v'), word2vec binary ('bin') or GloVe text ('glove')."""
    if fmt == "bin":
        with path.open("wb") as f:
            f.write(f"{len(VECTORS)} 3\n".encode())
            for word, vec in VECTORS.items():
                f.write(word.encode() + b" " + struct.pack("<3f", *vec) + b"\n")
        return path
    lines = [f"{w} " + " ".join(str(v) for v in vec) for w, vec in VECTORS.items()]
    header = [f"{len(VECTORS)} 3"] if fmt == "w2v" else []
    path.write_text("\n".join(header + lines) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["w2v", "bin", "glove"])
@pytest.mark.parametrize("variant", ["static", "non-static", "multichannel"])
def test_kim_cnn_word_vectors(tmp_path: Path, fmt: str, variant: str) -> None:
    path = _write(tmp_path / f"vectors.{fmt}", fmt)
    bundle = create_model("kim_cnn", variant=variant, vectors=str(path), vocab=VOCAB, embed_dim=3, max_len=5)
    tables = bundle.embed.tables()
    assert len(tables) == (2 if variant == "multichannel" else 1)
    for table in tables:
        w = table.weight
        assert torch.equal(w[0], torch.zeros(3))
        for i, word in enumerate(VOCAB[1:4], start=1):
            assert torch.allclose(w[i], torch.tensor(VECTORS[word]))
        assert w[4:].abs().max() <= 0.25  # 'plot' and 'unseen' are not in the file
    assert [t.weight.requires_grad for t in tables] == {"static": [False], "non-static": [True],
                                                        "multichannel": [False, True]}[variant]
    ids = torch.tensor([[1, 2, 3, 0, 0]])
    assert bundle.embed(ids).shape == (1, len(tables), 5, 3)
    assert bundle.input_shape == (len(tables), 5, 3)


def test_kim_cnn_bad_options(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="vectors file .* not found"):
        create_model("kim_cnn", variant="static", vectors=str(tmp_path / "none.txt"), vocab=VOCAB, embed_dim=3)
    path = _write(tmp_path / "v.txt", "glove")
    with pytest.raises(UsageError, match="3-d vectors but embed_dim is 300"):
        create_model("kim_cnn", variant="static", vectors=str(path), vocab=VOCAB)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UsageError, match="empty or not word2vec"):
        create_model("kim_cnn", vectors=str(tmp_path / "empty.txt"), vocab=VOCAB, embed_dim=3)
    (tmp_path / "cut.bin").write_bytes(_write(tmp_path / "full.bin", "bin").read_bytes()[:30])
    with pytest.raises(UsageError, match="truncated"):
        create_model("kim_cnn", vectors=str(tmp_path / "cut.bin"), vocab=VOCAB, embed_dim=3)
    with pytest.raises(UsageError, match="vocab_size"):
        create_model("kim_cnn")
    with pytest.raises(UsageError, match="unknown kim_cnn variant 'dynamic'"):
        create_model("kim_cnn", vocab_size=5, variant="dynamic")


def test_kim_cnn_checkpoint_keeps_embeddings(tmp_path: Path) -> None:
    torch.manual_seed(3)
    bundle = create_model("kim_cnn", vocab_size=10, embed_dim=4, max_len=6, variant="multichannel")
    path = tmp_path / "kim.pt"
    torch.save(checkpoint_module(bundle).state_dict(), path)
    torch.manual_seed(4)
    again = create_model("kim_cnn", vocab_size=10, embed_dim=4, max_len=6, variant="multichannel", weights=str(path))
    ids = torch.tensor([[1, 5, 9, 2, 0, 0]])
    assert torch.equal(again.model(again.embed(ids)), bundle.model(bundle.embed(ids)))
    assert not again.embed.static.weight.requires_grad


# ---------------------------------------------------------------- user models

USER_MODULE = '''
import torch
from torch import nn
from neuronimp.models import ModelBundle

def make(width=4):
    return nn.Sequential(nn.Flatten(), nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 3))

class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(6, 6), nn.Linear(6, 2), nn.ReLU()
    def forward(self, x):
        return self.fc2(self.act(self.act(self.fc1(x))))

class Branchy(Twice):
    def forward(self, x):
        h = self.act(self.fc1(x))
        return self.fc2(self.act(h) if h.sum() > -1e9 else h)  # data-dependent: torch.fx cannot trace it

def bundle(num_classes=2):
    net = nn.Sequential(nn.Linear(5, num_classes))
    return ModelBundle(model=net, name="mine", num_classes=num_classes, input_shape=(5,), default_layer="0")
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module `mymodels_zoo_test` importable from tmp_path."""
    (tmp_path / "mymodels_zoo_test.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mymodels_zoo_test", raising=False)
    return "mymodels_zoo_test"


def test_user_model(user_module: str, tmp_path: Path) -> None:
    bundle = create_model(f"{user_module}:make", input_shape=[2, 3], width=5)
    assert bundle.num_classes == 3 and bundle.input_shape == (2, 3) and bundle.default_layer == "2"
    assert {info.name: info.units for info in list_layers(bundle)} == {"0": 6, "1": 5, "2": 5, "3": 3}
    torch.save(bundle.model.state_dict(), tmp_path / "user.pt")
    again = create_model(f"{user_module}:make", weights=str(tmp_path / "user.pt"), input_shape=[2, 3], width=5)
    assert torch.equal(again.model[1].weight, bundle.model[1].weight)
    made = create_model(f"{user_module}:bundle", num_classes=4)
    assert made.name == "mine" and made.model[0].out_features == 4


def test_user_model_calling_one_relu_twice_gets_a_copy_per_call(user_module: str) -> None:
    # Twice.forward calls self.act twice: the model is traced (torch.fx) and the second call gets `act_site2`.
    bundle = create_model(f"{user_module}:Twice", input_shape=[6])
    names = {info.name for info in list_layers(bundle)}
    assert {"act", "act_site2"} <= names
    x = torch.randn(3, 6)
    with torch.no_grad():
        want = bundle.model.fc2(torch.relu(bundle.model.fc1(x)))
    torch.testing.assert_close(bundle.model(x), want)


def test_user_model_errors(user_module: str) -> None:
    with pytest.raises(UsageError, match="input_shape"):
        create_model(f"{user_module}:make")
    with pytest.raises(UsageError, match=r"act \(2 calls\).*one module per call site"):
        create_model(f"{user_module}:Branchy", input_shape=[6])
    with pytest.raises(UsageError, match="cannot import 'no_such_pkg_xyz.models'"):
        create_model("no_such_pkg_xyz.models:make", input_shape=[1])
    with pytest.raises(UsageError, match="has no attribute 'nope'"):
        create_model(f"{user_module}:nope")
    with pytest.raises(UsageError, match="bad options"):
        create_model(f"{user_module}:make", input_shape=[2, 3], depth=2)


def test_list_layers_leaves_training_mode_and_statistics_alone() -> None:
    bundle = create_model("mnist_cnn")
    bundle.model.train()
    before = bundle.model.bn1.running_mean.clone()
    with torch.no_grad():
        bundle.model.bn1.bias.fill_(1.0)  # a non-zero output, so a training-mode pass would move the statistics
    list_layers(bundle)
    assert bundle.model.training
    assert torch.equal(bundle.model.bn1.running_mean, before)
    assert bundle.model.bn1.num_batches_tracked.item() == 0
