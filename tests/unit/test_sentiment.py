"""The Kim CNN filter analysis: filter conductance (closed form, completeness), the n-gram a filter fires on,
sign categories, negation minimal pairs, the training-data lexicon, heat maps, configs."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from neuronimp.config import AttributionCfg, SentimentCfg, load_config
from neuronimp.errors import UsageError
from neuronimp.hooks import frozen
from neuronimp.models import create_model
from neuronimp.sentiment import heatmap, lexicon, negation, signs
from neuronimp.sentiment.filters import FilterBank, Margin, closed_form, filter_flow, fired, token_conductance
from neuronimp.sentiment.text import decode, encode_like, ngram, span, words

ROOT = Path(__file__).resolve().parents[2]
VOCAB = ["<pad>", "<unk>", "good", "not", "film", "bad"]


def tiny(seed: int = 0, windows: tuple[int, ...] = (2, 3), maps: int = 3, max_len: int = 10):
    """A random float64 Kim CNN bundle over VOCAB (embed_dim 4)."""
    torch.manual_seed(seed)
    b = create_model("kim_cnn", vocab=VOCAB, embed_dim=4, max_len=max_len, windows=windows, maps=maps)
    b.model.double().eval()
    b.embed.double().eval()
    with torch.no_grad():
        for w in windows:  # negative biases, so that padding windows are below the sentence's windows
            getattr(b.model.pool, f"conv{w}").bias.fill_(-0.05)
    return b


def ids_of(*sents: str, length: int = 10, pad: int = 2) -> torch.Tensor:
    return torch.stack([encode_like(s.split(), VOCAB, length, pad) for s in sents])


@pytest.mark.parametrize("target", ["margin", "predicted"])
def test_filter_conductance_is_weight_times_activation_change(target: str) -> None:
    b = tiny()
    bank = FilterBank.of(b.model)
    x = b.embed(ids_of("good film", "not good film", "bad bad film", "film"))
    base = torch.zeros_like(x)
    flow = filter_flow(b.model, bank, x, base, target, AttributionCfg(n_steps=4).params())
    exact = closed_form(b.model, bank, x, base, target)
    assert flow.conductance.shape == (4, 6)
    assert torch.allclose(flow.conductance, exact, atol=1e-10)
    assert exact.abs().max() > 1e-3
    assert flow.delta.abs().max() < 1e-10                     # linear head: completeness is exact
    logits = b.model(x)
    want = logits[:, 1] - logits[:, 0] if target == "margin" else logits.max(1).values
    assert torch.allclose(flow.score, want.detach(), atol=1e-12)


def test_margin_wrapper_leaves_the_model_in_eval_mode() -> None:
    b = tiny()
    x = b.embed(ids_of("good film"))
    with frozen(Margin(b.model)):
        pass
    assert not b.model.training and not b.model.dropout.training
    filter_flow(b.model, FilterBank.of(b.model), x, torch.zeros_like(x), "margin",
                AttributionCfg(n_steps=2).params())
    assert not any(m.training for m in b.model.modules())


def test_token_conductance_sums_to_filter_conductance_and_pads_get_zero() -> None:
    b = tiny()
    bank = FilterBank.of(b.model)
    ids = ids_of("not good film", "bad film")
    x = b.embed(ids)
    base = torch.zeros_like(x)
    total = closed_form(b.model, bank, x, base, "margin")                      # 2 x 6
    units = total.abs().min(0).values.argsort(descending=True)[:2].tolist()    # active in both sentences
    assert total[:, units].abs().min() > 1e-3
    for unit in units:
        tok = token_conductance(b.model, bank, unit, x, base, "margin", AttributionCfg(n_steps=100).params())
        assert tok.shape == (2, 10)
        assert torch.all(tok[ids == 0] == 0)
        gap = (tok.sum(1) - total[:, unit]).abs()
        assert torch.all(gap < 0.05 * total[:, unit].abs()), (unit, gap, total[:, unit])  # ReLU kinks: O(1/n)


def test_fired_ngram_of_a_hand_built_not_good_detector() -> None:
    b = tiny(windows=(2,), maps=2)
    with torch.no_grad():
        table = torch.zeros(len(VOCAB), 4, dtype=torch.float64)
        table[2:6] = torch.eye(4, dtype=torch.float64)        # good, not, film, bad -> one-hot
        b.embed.non_static.weight.copy_(table)
        conv = b.model.pool.conv2
        conv.weight.zero_()
        conv.bias.fill_(-1.0)
        conv.weight[0, 0, 0, 1] = 1.0                         # position t: 'not'
        conv.weight[0, 0, 1, 0] = 1.0                         # position t + 1: 'good'
    bank = FilterBank.of(b.model)
    ids = ids_of("film not good film")                        # 2 pads, then tokens at 2..5
    act, start = fired(b.model, bank, b.embed(ids))
    assert act[0, 0].item() == pytest.approx(1.0)
    assert int(start[0, 0]) == 3
    assert ngram(decode(ids[0], VOCAB), int(start[0, 0]), bank.window(0)) == "not good"
    assert (bank.units, bank.window(1), bank.map(1)) == (2, 2, 1)
    with pytest.raises(UsageError, match="allowed: 0..1"):
        bank.check(2)


def test_signs_and_categories_by_hand() -> None:
    cond = torch.tensor([[0.5, -0.2, 0.005, 0.3], [0.4, 0.1, -0.009, -0.3], [0.2, -0.3, 0.0, 0.3]])
    s = signs.signs(cond, 0.01)
    assert s.tolist() == [[1, -1, 0, 1], [1, 1, 0, -1], [1, -1, 0, 1]]
    assert signs.category(9, 1, 0.9, 5) == "positive"
    assert signs.category(1, 9, 0.9, 5) == "negative"
    assert signs.category(8, 2, 0.9, 5) == "mixed"
    assert signs.category(3, 0, 0.9, 5) == "rarely_active"
    grams = [["a", "b", "c", "d"]] * 3
    rows = list(signs.filter_rows(cond, s, grams, (2, 3), 2, almost_always=0.6, min_nonzero=2))
    assert [r["category"] for r in rows] == ["positive", "negative", "rarely_active", "positive"]
    assert rows[1]["share_negative"] == pytest.approx(2 / 3) and rows[3]["window"] == 3 and rows[3]["map"] == 1
    assert rows[0]["top_ngrams"] == "a (3)" and math.isnan(rows[2]["share_positive"])
    shares = {r["category"]: r["share"] for r in signs.share_rows(rows)}
    assert shares == {"positive": 0.5, "negative": 0.25, "mixed": 0.0, "rarely_active": 0.25}


def test_minimal_pairs_and_changes() -> None:
    lex = {"good": 1, "dull": 0}
    sents = [["it", "is", "good"], ["a", "dull", "film"], ["not", "good"], ["nothing", "here"]]
    pairs = negation.minimal_pairs(sents, [10, 11, 12, 13], lex, ["not", "n't", "never"], max_pairs=10)
    got = [(p.input_id, p.negator, " ".join(p.negated)) for p in pairs]
    assert got == [(10, "not", "it is not good"), (10, "n't", "it is n't good"), (10, "never", "it is never good"),
                   (11, "not", "a not dull film"), (11, "never", "a never dull film")]
    assert pairs[3].polarity == 0 and pairs[3].position == 1
    assert len(negation.minimal_pairs(sents, [0, 1, 2, 3], lex, ["not"], max_pairs=1)) == 1
    assert [negation.change(a, b) for a, b in [(1, -1), (-1, 1), (1, 0), (0, -1), (1, 1), (0, 0)]] == \
        ["flip", "flip", "off", "on", None, None]
    rows = list(negation.change_rows(0, [1, 0, -1], [-1, 1, -1], [0.2, 0.0, -0.1], [-0.1, 0.3, -0.2],
                                     ["x"] * 3, ["y"] * 3, (3,), 3))
    assert [(r["filter"], r["change"]) for r in rows] == [(0, "flip"), (1, "on")]
    summary = list(negation.filter_summary(rows + [dict(rows[0], pair_id=1)], ["positive", "mixed", "negative"]))
    assert summary[0]["filter"] == 0 and summary[0]["flip"] == 2 and summary[0]["mean_change"] == pytest.approx(-0.3)


def test_training_lexicon_log_odds() -> None:
    sents = [["great", "film"], ["great", "fun"], ["awful", "film"], ["awful", "mess", "not"]] * 3
    labels = [1, 1, 0, 0] * 3
    lo = lexicon.log_odds(sents, labels)
    # 'great': c1 = 6 of n1 = 12 tokens, c0 = 0 of n0 = 15; V = 6 -> log(6.5 / 15) - log(0.5 / 18)
    assert lo["great"][0] == pytest.approx(math.log(6.5 / 15) - math.log(0.5 / 18))
    assert lo["film"][1] == 6
    lex = lexicon.from_training(sents, labels, top=1, min_count=4)
    assert lex == {"great": 1, "awful": 0}                    # 'not' is a negator, never a sentiment word
    assert lexicon.builtin()["good"] == 1 and lexicon.builtin()["dull"] == 0
    assert not set(lexicon.POSITIVE) & set(lexicon.NEGATIVE)


def test_heatmaps() -> None:
    toks, sc = ["<pad>", "good", "bad"], [0.0, 2.0, -1.0]
    page = heatmap.html_sentence(toks, sc)
    assert "&lt;pad&gt;" in page and "rgb(255,255,255)" in page and f"rgb{heatmap.POS}".replace(" ", "") in page
    assert "rgb(234,147,148)" in page      # half-strength red: round(255 + 0.5 * (c - 255)) for (214, 39, 40)
    line = heatmap.ansi(toks, sc)
    assert line.count("\x1b[0m") == 3 and "48;2;46;160;67m" in line
    assert heatmap.plain(["a"], [0.5]) == "a[+0.5]"
    assert heatmap.terminal(["a"], [0.5], color=False) == "a[+0.5]"


def test_text_helpers() -> None:
    row = encode_like(["good", "zzz", "film"], VOCAB, 8, 2)
    assert row.tolist() == [0, 0, 2, 1, 4, 0, 0, 0]
    assert span(row) == (2, 5) and words(row, VOCAB) == ["good", "<unk>", "film"]
    assert encode_like(["good"] * 9, VOCAB, 8, 2).tolist() == [0, 0] + [2] * 6


def test_sentiment_config_and_kim_configs_load() -> None:
    cfg = SentimentCfg()
    assert (cfg.zero_tol, cfg.almost_always, cfg.negators) == (0.01, 0.9, ["not", "n't", "never"])
    with pytest.raises(ValueError):
        SentimentCfg(almost_always=0.4)
    sst = load_config(ROOT / "configs" / "kimcnn_sst2.yaml")
    mr = load_config(ROOT / "configs" / "kimcnn_mr.yaml")
    for c in (sst, mr):
        t = c.train
        assert (t.epochs, t.batch_size, t.optimizer, t.lr, t.adadelta_rho, t.max_norm) == \
            (25, 50, "adadelta", 1.0, 0.95, 3.0)
        assert c.model.options["windows"] == [3, 4, 5] and c.model.options["maps"] == 100
        assert c.model.options["dropout"] == 0.5 and c.layers == ["features"]
    assert sst.train.checkpoint == "results/checkpoints/kimcnn_sst2.pt" and sst.train.select_on_dev
    assert mr.data.name == "mr" and mr.data.options["cv_fold"] == 0
    assert mr.train.select_on_dev and mr.data.options["dev_fraction"] == 0.1  # Kim's 10% dev hold-out
    for study in ("ablate", "select"):
        c = load_config(ROOT / "configs" / f"kimcnn_sst2_{study}.yaml")
        assert c.model.weights == sst.train.checkpoint and c.model.options == sst.model.options
        assert c.layers == ["features"] and c.attribution.baseline == "zero"
    readers = [c for c in map(load_config, sorted((ROOT / "configs").glob("kimcnn_*.yaml")))
               if c.model.weights == sst.train.checkpoint and c.name != sst.name]
    assert {"kimcnn_sst2_ablate", "kimcnn_sst2_select"} <= {c.name for c in readers}
    for c in readers:  # every config that reads the SST-2 checkpoint (the delete study trains its own nets)
        # same data options -> same held-out dev -> same training sentences -> the checkpoint's vocabulary
        assert c.data.name == "sst2" and c.data.options == sst.data.options, c.name
