"""Kim (2014), "Convolutional Neural Networks for Sentence Classification" (EMNLP), split for attribution.

`bundle.embed` maps token ids [N, L] to embeddings [N, C, L, D] (C = 2 for multichannel); `bundle.model`
takes those floats, so path methods interpolate embeddings and the all-padding baseline is the zero
embedding. Per window w: Conv2d(C, maps, (w, D)) -> ReLU -> max over time; the concatenated max-pooled
features (3 x 100 = 300 units) are the output of `features`, the default layer; then dropout -> fc.
Variants (Kim Sec. 3.1): rand (random embeddings, trained), static (pretrained, frozen), non-static
(pretrained, fine-tuned), multichannel (one frozen and one fine-tuned copy).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from neuronimp.errors import UsageError
from neuronimp.models.bundle import MODELS, ModelBundle, checkpoint_module
from neuronimp.models.vectors import read_vectors
from neuronimp.models.weights import load_weights

VARIANTS = ("rand", "static", "non-static", "multichannel")
UNIFORM = 0.25  # Kim: words without a pretrained vector (and CNN-rand) are drawn from U[-0.25, 0.25]


class Embedder(nn.Module):
    """Token ids [N, L] -> embeddings [N, C, L, D]; `static` is frozen, `non_static` is trained; id 0 is zero."""

    def __init__(self, init: Tensor, variant: str) -> None:
        super().__init__()
        vocab_size, dim = init.shape
        self.static = nn.Embedding(vocab_size, dim, padding_idx=0) if variant in ("static", "multichannel") \
            else None
        self.non_static = nn.Embedding(vocab_size, dim, padding_idx=0) if variant != "static" else None
        for table in self.tables():
            with torch.no_grad():
                table.weight.copy_(init)
                table.weight[0].zero_()
        if self.static is not None:
            self.static.weight.requires_grad_(False)

    def tables(self) -> list[nn.Embedding]:
        """The embedding tables, in channel order (static first)."""
        return [t for t in (self.static, self.non_static) if t is not None]

    def forward(self, ids: Tensor) -> Tensor:
        """N x L (long) -> N x C x L x D."""
        return torch.stack([table(ids) for table in self.tables()], dim=1)


class NgramConvs(nn.Module):
    """Per window w: conv{w} (w x D) -> relu{w} -> max{w} over time; outputs concatenated, N x maps*len(windows)."""

    is_block_container = True  # list_layers shows conv3, relu3, max3, ... as layers

    def __init__(self, channels: int, dim: int, windows: Sequence[int], maps: int) -> None:
        super().__init__()
        self.windows = tuple(windows)
        for w in self.windows:
            self.add_module(f"conv{w}", nn.Conv2d(channels, maps, (w, dim)))  # N x maps x (L-w+1) x 1
            self.add_module(f"relu{w}", nn.ReLU())
            self.add_module(f"max{w}", nn.AdaptiveMaxPool2d((1, 1)))          # N x maps x 1 x 1

    def forward(self, x: Tensor) -> Tensor:
        """N x C x L x D -> N x (maps * len(windows))."""
        feats = []
        for w in self.windows:
            a = getattr(self, f"relu{w}")(getattr(self, f"conv{w}")(x))
            feats.append(torch.flatten(getattr(self, f"max{w}")(a), 1))      # N x maps
        return torch.cat(feats, dim=1)


class KimCNN(nn.Module):
    """Embeddings [N, C, L, D] -> pool (filter bank) -> features -> dropout -> fc -> logits [N, classes]."""

    def __init__(self, channels: int, dim: int, windows: Sequence[int], maps: int, dropout: float,
                 num_classes: int) -> None:
        super().__init__()
        self.pool = NgramConvs(channels, dim, windows, maps)
        self.features = nn.Identity()                                         # N x 300: the hook target
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(maps * len(windows), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """N x C x L x D -> N x num_classes."""
        return self.fc(self.dropout(self.features(self.pool(x))))


def apply_max_norm(model: nn.Module, max_norm: float = 3.0) -> None:
    """Kim's constraint: rescale each row of fc.weight (one class) to L2 norm <= max_norm, in place."""
    fc = model.fc if hasattr(model, "fc") else model
    with torch.no_grad():
        fc.weight.copy_(torch.renorm(fc.weight, p=2, dim=0, maxnorm=max_norm))


def initial_embeddings(vocab_size: int, dim: int, vocab: Sequence[str] | None, vectors: str | None) -> Tensor:
    """[V, D] start values: pretrained vectors where the file has the word, U[-0.25, 0.25] elsewhere; row 0 zero."""
    init = torch.empty(vocab_size, dim).uniform_(-UNIFORM, UNIFORM)
    if vectors is not None:
        if vocab is None:
            raise UsageError("option vectors needs the vocabulary (option vocab: index -> token, 0 is '<pad>')")
        found, file_dim = read_vectors(vectors, vocab)
        if file_dim != dim:
            raise UsageError(f"vectors file {vectors!r} has {file_dim}-d vectors but embed_dim is {dim}")
        if not found:
            raise UsageError(f"vectors file {vectors!r} holds none of the {len(vocab)} vocabulary words")
        for i, word in enumerate(vocab):
            if i > 0 and word in found:
                init[i] = found[word]
    init[0] = 0.0
    return init


def _check(vocab_size: int | None, vocab: Sequence[str] | None, variant: str, windows: Sequence[int],
           max_len: int) -> int:
    """Validate the options; return the vocabulary size."""
    if variant not in VARIANTS:
        raise UsageError(f"unknown kim_cnn variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    if vocab is not None:
        if vocab_size is not None and vocab_size != len(vocab):
            raise UsageError(f"vocab_size {vocab_size} differs from the vocabulary's {len(vocab)} tokens")
        vocab_size = len(vocab)
    if vocab_size is None or vocab_size < 2:
        raise UsageError("kim_cnn needs option vocab_size (>= 2, id 0 is padding) or vocab")
    if not windows or len(set(windows)) != len(windows) or min(windows) < 1:
        raise UsageError(f"kim_cnn windows must be distinct positive sizes, got {list(windows)}")
    if max_len < max(windows):
        raise UsageError(f"kim_cnn max_len {max_len} is shorter than the widest window {max(windows)}")
    return vocab_size


@MODELS.register("kim_cnn")
def kim_cnn(weights: str = "none", num_classes: int | None = None, vocab_size: int | None = None,
            embed_dim: int = 300, max_len: int = 64, windows: Sequence[int] = (3, 4, 5), maps: int = 100,
            dropout: float = 0.5, variant: str = "rand", vectors: str | None = None,
            vocab: Sequence[str] | None = None) -> ModelBundle:
    """Kim (2014) sentence CNN; variant rand|static|non-static|multichannel; default layer features."""
    windows = tuple(int(w) for w in windows)
    vocab_size = _check(vocab_size, vocab, variant, windows, max_len)
    n = num_classes or 2
    channels = 2 if variant == "multichannel" else 1
    embed = Embedder(initial_embeddings(vocab_size, embed_dim, vocab, vectors), variant)
    model = KimCNN(channels, embed_dim, windows, maps, dropout, n)
    aliases = {"penultimate": "features"}  # Kim Sec. 2: dropout and the max-norm act on the penultimate layer
    bundle = ModelBundle(model=model, name="kim_cnn", num_classes=n, input_shape=(channels, max_len, embed_dim),
                         layer_aliases=aliases, default_layer="features", embed=embed)
    load_weights(checkpoint_module(bundle), weights, None, name="kim_cnn")
    return bundle
