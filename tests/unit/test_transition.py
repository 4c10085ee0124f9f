"""MF-MDP's state-transition model f_psi, its losses and its training loop (SPEC section 6)."""

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from mfray.eval.metrics import kl_divergence
from mfray.mdp.transition import (
    StateTransition,
    TransitionConfig,
    assemble_sequence,
    assemble_token,
    kl_rows,
    persistence,
    roll_loss,
    roll_terms,
    rollout,
    seq_loss,
    seq_terms,
    smoothed_persistence,
    token_dim,
    transition_loss,
)
from mfray.mdp.transition_train import (
    EventSequence,
    best_persistence_floor,
    load_transition,
    pad_batch,
    predict_next,
    rollout_kl,
    save_checkpoint,
    split_windows,
    train_transition,
)

LOG2 = math.log(2)
U = [0.25, 0.25, 0.5]
H = [0.5, 0.5, 0.0]
E1 = [1.0, 0.0, 0.0]


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: a second intra-op thread only adds synchronisation, which costs
    seconds per step when the machine's cores are busy with other work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = {"encoder_dim": 2, "d_model": 16, "layers": 2, "heads": 4, "ffn": 32, "dropout": 0.0, "window": 16}


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def tokens(m0, m_star, extra=1):
    """[1, T, 3 + extra]: m-slots m0, m*_0, ..., m*_{T-2}, then `extra` zero features."""
    m_prev = t(m0, *m_star[:-1])
    return torch.cat([m_prev, torch.zeros(len(m_star), extra, dtype=torch.float64)], dim=1)[None]


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return StateTransition(TransitionConfig(**{**TINY, **overrides})).eval()


def random_batch(batch, steps, cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, cfg.d_in, generator=g)
    m = torch.softmax(torch.randn(batch, steps, 3, generator=g), dim=-1)
    return x, m


# --- KL ---------------------------------------------------------------------------------------

def test_kl_rows_by_hand():
    # KL([.5, .5, 0] || [.25, .25, .5]) = .5 log 2 + .5 log 2 + 0 = log 2
    # KL([1, 0, 0] || [.25, .25, .5]) = log 4;  KL(p || p) = 0
    out = kl_rows(t(H, E1, U), t(U, U, U), eps=0.0)
    assert out.tolist() == pytest.approx([LOG2, 2 * LOG2, 0.0])


def test_kl_rows_smooths_like_the_metrics():
    # p = [1, 0, 0], q = [0, 1, 0]: infinite unsmoothed; with eps both get eps added, renormalised
    p, q, eps = np.array(E1), np.array([0.0, 1.0, 0.0]), 1e-3
    ps, qs = (p + eps) / (1 + 3 * eps), (q + eps) / (1 + 3 * eps)
    by_hand = sum(a * math.log(a / b) for a, b in zip(ps, qs))
    got = kl_rows(torch.tensor(p), torch.tensor(q), eps).item()
    assert got == pytest.approx(by_hand) and got == pytest.approx(kl_divergence(p, q, eps))
    assert kl_rows(torch.tensor(p), torch.tensor(q)).item() == pytest.approx(kl_divergence(p, q))
    with pytest.raises(ValueError, match="KL of shapes"):
        kl_rows(t(H), t(H, H))


# --- losses by hand, with the persistence predictor (m_hat_t = m_{t-1}) ------------------------

# m_0 = U, m* = [H, E1, E1], so the tokens' m-slots are [U, H, E1].
M_STAR = [H, E1, E1]


def test_seq_loss_by_hand():
    x, m = tokens(U, M_STAR), t(*M_STAR)[None]
    teacher = persistence(x, None, None)
    # KL(H || U) = log 2, KL(E1 || H) = log 2, KL(E1 || E1) = 0 -> mean 2 log 2 / 3
    assert seq_terms(teacher, m, eps=0.0).tolist() == pytest.approx([LOG2, LOG2, 0.0])
    assert seq_loss(teacher, m, eps=0.0).item() == pytest.approx(2 * LOG2 / 3)


def test_roll_loss_by_hand():
    x, m = tokens(U, M_STAR), t(*M_STAR)[None]
    # K = 2. Start 0: predicts U at 0 and, fed back, U at 1: KL(H||U) = log 2, KL(E1||U) = log 4.
    # Start 1: H at 1 and 2: KL(E1||H) = log 2 twice. Start 2: E1 at 2: 0; its step to 3 is past the end.
    # 5 terms summing to 5 log 2 -> mean log 2.
    assert roll_terms(persistence, x, m, 2, eps=0.0).tolist() == pytest.approx([LOG2, 2 * LOG2, LOG2, LOG2, 0.0])
    assert roll_loss(persistence, x, m, 2, eps=0.0).item() == pytest.approx(LOG2)
    # Only start 0: (log 2 + log 4) / 2
    assert roll_loss(persistence, x, m, 2, starts=torch.tensor([0]), eps=0.0).item() == pytest.approx(1.5 * LOG2)


def test_roll_k1_is_the_teacher_forced_loss():
    # K = 1 from every start: step 0 of each rollout is the teacher-forced prediction, so L_roll = L_seq.
    x, m = tokens(U, M_STAR), t(*M_STAR)[None]
    assert roll_loss(persistence, x, m, 1, eps=0.0).item() == pytest.approx(seq_loss(x[..., :3], m, eps=0.0).item())
    model = tiny_model()
    x, m = random_batch(2, 7, model.cfg)
    with torch.no_grad():
        assert roll_loss(model.forward_masked, x, m, 1).item() == pytest.approx(seq_loss(model(x), m).item(), rel=1e-6)


def cumulative_mean(x, positions, allowed):
    """A stub predictor: the mean m-slot over the keys each query may attend."""
    weights = allowed.to(x.dtype)
    return (weights @ x[..., :3]) / weights.sum(dim=1, keepdim=True)


def test_rollout_sees_only_its_prefix_and_its_own_rolled_tokens():
    # m-slots a, b, c (one-hot). Teacher-forced cumulative means: a, (a+b)/2, (a+b+c)/3.
    # A rollout from s feeds its own mean back, which leaves the mean unchanged: start 0 gives
    # a, a, a; start 1 gives (a+b)/2 twice, then past the end. Had start 0's rolled token at
    # position 1 seen the real token b (or start 1's tokens), it would read (a+b)/2 or so instead.
    a, b, c = [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]
    x = tokens(a, [b, c, E1])
    out = rollout(cumulative_mean, x, 3)
    ab, abc = [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]
    zero = [0.0, 0.0, 0.0]
    assert out[0].tolist() == [[pytest.approx(v) for v in row] for row in
                               ([a, a, a], [ab, ab, zero], [abc, zero, zero])]


def naive_rollout(model, x, s, k):
    """Reference: start s rolled step by step, each step a fresh forward over its own prefix."""
    seq, out = x.clone(), []
    for j in range(k):
        if s + j >= x.shape[0]:
            break
        m_hat = model(seq[: s + j + 1])[-1]
        out.append(m_hat)
        if s + j + 1 < x.shape[0]:
            seq[s + j + 1, :3] = m_hat
    return out


def test_batched_rollout_matches_step_by_step_rollout():
    model = tiny_model()
    x, _ = random_batch(2, 6, model.cfg, seed=1)
    with torch.no_grad():
        batched = rollout(model.forward_masked, x, 3)
        for b in range(2):
            for s in range(6):
                reference = naive_rollout(model, x[b], s, 3)
                for j, expected in enumerate(reference):
                    torch.testing.assert_close(batched[b, s, j], expected, rtol=1e-5, atol=1e-6)


def test_rollout_feeds_gradient_back_through_predictions():
    model = tiny_model()
    x, m = random_batch(1, 5, model.cfg)
    roll_loss(model.forward_masked, x, m, 3).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# --- the model ---------------------------------------------------------------------------------

def test_shapes_and_distributions():
    model = tiny_model()
    x, _ = random_batch(3, 5, model.cfg)
    out = model(x)
    assert out.shape == (3, 5, 3) and torch.allclose(out.sum(-1), torch.ones(3, 5))
    assert model(x[0]).shape == (5, 3)
    assert token_dim(768) == 3 + 3 * 768 == TransitionConfig().d_in


def test_residual_output_moves_the_previous_distribution_by_hand(tmp_path):
    """softmax(head + log(m_{t-1} + floor)): a zero head returns m_{t-1} smoothed by the floor; a
    head bias of log 2 on the first state doubles its odds."""
    model = tiny_model(residual=True, residual_floor=1e-3)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    x = torch.zeros(1, 2, model.cfg.d_in)
    x[0, 0, :3], x[0, 1, :3] = torch.tensor(H), torch.tensor(E1)
    torch.testing.assert_close(model(x)[0], torch.tensor([[0.501, 0.501, 0.001], [1.001, 0.001, 0.001]])
                               / torch.tensor([[1.003], [1.003]]))
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([LOG2, 0.0, 0.0]))
    torch.testing.assert_close(model(x)[0, 0], torch.tensor([1.002, 0.501, 0.001]) / 1.504)
    plain = tiny_model()
    with torch.no_grad():
        plain.head.weight.zero_()
        plain.head.bias.zero_()
    torch.testing.assert_close(plain(x)[0], torch.full((2, 3), 1 / 3))  # the plain head ignores m_{t-1}

    save_checkpoint(model, tmp_path / "residual.pt")
    assert load_transition(tmp_path / "residual.pt").cfg == model.cfg
    save_checkpoint(plain, tmp_path / "plain.pt")  # saved without the residual fields, loaded as their defaults
    saved = torch.load(tmp_path / "plain.pt", weights_only=True)["config"]
    assert "residual" not in saved and load_transition(tmp_path / "plain.pt").cfg == plain.cfg


def test_smoothed_persistence_and_its_floor_by_hand():
    x = tokens(H, [E1, U])  # m-slots H, E1
    torch.testing.assert_close(smoothed_persistence(1e-3)(x, None, None)[0],
                               t([0.501, 0.501, 0.001], [1.001, 0.001, 0.001]) / 1.003)
    with pytest.raises(ValueError, match="floor"):
        smoothed_persistence(0.0)
    # m_{t-1} = E1, m*_t = H: floor 0.5 predicts (0.6, 0.2, 0.2), KL 0.5 ln(0.5/0.6) + 0.5 ln(0.5/0.2)
    # = 0.367; floor 1e-3 predicts (0.998, 0.001, 0.001), KL 2.76: the larger floor wins.
    event = EventSequence(torch.tensor([E1 + [0.0]]), torch.tensor([H]))
    assert best_persistence_floor([event], floors=(1e-3, 0.5)) == 0.5
    assert best_persistence_floor([event], floors=(1e-3,)) == 1e-3


def test_causal():
    model = tiny_model()
    x, _ = random_batch(1, 6, model.cfg)
    changed = x.clone()
    changed[0, 3] += 5.0
    before, after = model(x), model(changed)
    torch.testing.assert_close(before[0, :3], after[0, :3])  # steps before 3 never see step 3
    assert not torch.allclose(before[0, 3:], after[0, 3:])


def test_padding_masks():
    model = tiny_model()
    x, m = random_batch(2, 5, model.cfg, seed=2)
    events = [EventSequence(x[0], m[0]), EventSequence(x[1, :3], m[1, :3])]
    bx, bm, mask = pad_batch(events)
    assert mask.tolist() == [[False] * 5, [False] * 3 + [True] * 2]
    with torch.no_grad():
        torch.testing.assert_close(model(bx, mask)[1, :3], model(x[1, :3]))
        # The padded losses pool the valid positions of both events, as if each ran alone.
        solo_seq = torch.cat([seq_terms(model(e.x[None]), e.m[None]) for e in events])
        solo_roll = torch.cat([roll_terms(model.forward_masked, e.x[None], e.m[None], 3) for e in events])
        assert seq_loss(model(bx, mask), bm, mask).item() == pytest.approx(solo_seq.mean().item(), rel=1e-5)
        assert roll_loss(model.forward_masked, bx, bm, 3, mask).item() == pytest.approx(solo_roll.mean().item(), rel=1e-5)
    assert len(solo_roll) == (3 + 3 + 3 + 2 + 1) + (3 + 2 + 1)
    with pytest.raises(ValueError, match="right padding"):
        model(bx, mask.flip(1))


def test_longer_than_the_window_keeps_the_last_window():
    model = tiny_model(window=4)
    x, m = random_batch(1, 7, model.cfg)
    torch.testing.assert_close(model(x), model(x[:, -4:]))
    assert predict_next(model, x[0]).tolist() == pytest.approx(model(x[0, -4:])[-1].tolist())
    assert [len(p.x) for p in split_windows([EventSequence(x[0], m[0])], 4)] == [4, 3]
    with pytest.raises(ValueError, match="exceeds the window"):
        transition_loss(model, x, m)


def test_dimension_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"expected \(B, T, 9\)"):
        model(torch.zeros(1, 4, 8))
    x, m = random_batch(1, 4, model.cfg)
    with pytest.raises(ValueError, match="targets m"):
        roll_loss(model.forward_masked, x, m[:, :3], 2)
    with pytest.raises(ValueError, match="rollout starts"):
        roll_loss(model.forward_masked, x, m, 2, starts=torch.tensor([4]))
    with pytest.raises(ValueError, match="no valid step"):
        seq_loss(m, m, torch.ones(1, 4, dtype=torch.bool))


# --- input assembly ------------------------------------------------------------------------------

def test_assemble_token_by_hand():
    # m = [.2, .3, .5]; E(r) = [1, 2]; profiles [[1, 0], [3, 4]] -> mean [2, 2]; no signal -> [0, 0]
    x = assemble_token(np.array([0.2, 0.3, 0.5]), torch.tensor([1.0, 2.0]), [[1.0, 0.0], [3.0, 4.0]])
    assert x.dtype == torch.float32 and x.tolist() == pytest.approx([0.2, 0.3, 0.5, 1, 2, 2, 2, 0, 0])
    assert assemble_token(U, [1.0, 2.0], [[0.0, 0.0]], [7.0, 8.0])[-2:].tolist() == [7.0, 8.0]


@pytest.mark.parametrize("args, message", [
    (([0.5, 0.5], [1.0], [[1.0]]), r"m_\{t-1\} has shape \(2,\)"),
    (([0.5, 0.6, 0.0], [1.0], [[1.0]]), "must be a distribution"),
    ((U, [1.0, 2.0], [[1.0]]), r"E\(profiles\) has shape \(1, 1\), expected \(nx2\)"),
    ((U, [1.0, 2.0], np.zeros((0, 2))), r"E\(profiles\) has shape \(0, 2\)"),
    ((U, [1.0, 2.0], [[1.0, 2.0]], [1.0]), r"E\(c_t\) has shape \(1,\), expected \(2\)"),
    ((U, [1.0, float("nan")], [[1.0, 2.0]]), "non-finite"),
])
def test_assemble_token_errors(args, message):
    with pytest.raises(ValueError, match=message):
        assemble_token(*args)


def test_assemble_sequence_shifts_m():
    x = assemble_sequence(U, [H, E1], [[0.0], [1.0]], [[[2.0]], [[3.0], [5.0]]], [None, [9.0]])
    assert x.tolist() == [pytest.approx(U + [0.0, 2.0, 0.0]), pytest.approx(H + [1.0, 4.0, 9.0])]
    with pytest.raises(ValueError, match="2 histograms but 1 E"):
        assemble_sequence(U, [H, E1], [[0.0]], [[[2.0]], [[3.0]]])


# --- config ------------------------------------------------------------------------------------

def test_config_defaults_are_the_specs():
    cfg = TransitionConfig()
    assert (cfg.d_model, cfg.layers, cfg.heads, cfg.ffn, cfg.dropout, cfg.window) == (256, 3, 8, 1024, 0.1, 4096)
    assert (cfg.lr, cfg.weight_decay, cfg.clip, cfg.events_per_batch, cfg.epochs) == (2e-5, 1e-5, 1.0, 4, 20)
    assert (cfg.rollout_k, cfg.alpha, cfg.roll_starts, cfg.encoder_dim) == (8, 1.0, None, 768)


@pytest.mark.parametrize("values, message", [
    ({"heads": 3}, "not divisible by heads 3"), ({"lr": 0.0}, "lr"), ({"dropout": 1.0}, "dropout"),
    ({"rollout_k": 0}, "rollout_k"), ({"epochs": "2"}, "epochs"), ({"roll_strats": 4}, "roll_strats"),
    ({"residual_floor": 0.0}, "residual_floor"),
])
def test_config_rejects_bad_values(values, message):
    with pytest.raises(ValidationError, match=message):
        TransitionConfig(**values)


def test_total_loss_is_seq_plus_alpha_roll():
    model = tiny_model(alpha=0.5, rollout_k=3)
    x, m = random_batch(2, 5, model.cfg)
    total, l_seq, l_roll = transition_loss(model, x, m)
    assert total.item() == pytest.approx(l_seq.item() + 0.5 * l_roll.item())
    assert l_roll.item() == pytest.approx(roll_loss(model.forward_masked, x, m, 3).item())
    total, l_seq, l_roll = transition_loss(tiny_model(alpha=0.0), x, m)
    assert total.item() == l_seq.item() and math.isnan(l_roll.item())


# --- training ----------------------------------------------------------------------------------

def synthetic_events(count, steps, encoder_dim, seed):
    """m*_t = softmax(A m*_{t-1} + B z_t), z_t the token's other (random) slots; A and B fixed for
    all events, so the next histogram is a learnable function of the token."""
    fixed = torch.Generator().manual_seed(1234)
    a, b = 3 * torch.randn(3, 3, generator=fixed), torch.randn(3 * encoder_dim, 3, generator=fixed)
    g = torch.Generator().manual_seed(seed)
    events = []
    for _ in range(count):
        m_prev, xs, ms = torch.softmax(torch.randn(3, generator=g), -1), [], []
        for _ in range(steps):
            z = torch.randn(3 * encoder_dim, generator=g)
            m = torch.softmax(m_prev @ a + z @ b, -1)
            xs.append(torch.cat([m_prev, z]))
            ms.append(m)
            m_prev = m
        events.append(EventSequence(torch.stack(xs), torch.stack(ms)))
    return events


def test_training_lowers_heldout_losses_and_beats_persistence(tmp_path):
    cfg = TransitionConfig(encoder_dim=2, d_model=32, layers=2, heads=4, ffn=64, dropout=0.0, window=32,
                           lr=3e-3, epochs=12, rollout_k=4, events_per_batch=4)
    train, heldout = synthetic_events(16, 20, 2, seed=0), synthetic_events(4, 20, 2, seed=1)
    model, history = train_transition(train, heldout, cfg, seed=7)
    first, last = history[0], history[-1]
    assert [h.epoch for h in history] == list(range(13))
    assert last.heldout_seq < 0.5 * first.heldout_seq and last.heldout_roll < 0.5 * first.heldout_roll
    assert last.train_roll < first.train_roll
    event = heldout[0]
    scores = rollout_kl(model, event.x, event.m, 4, floor=1e-2)
    assert scores["model"] < 0.25 * scores["persistence"] and scores["model"] < 0.25 * scores["persistence_smoothed"]

    save_checkpoint(model, tmp_path / "f.pt")
    loaded = load_transition(tmp_path / "f.pt")
    assert loaded.cfg == cfg
    torch.testing.assert_close(loaded(event.x), model(event.x), rtol=0, atol=0)
    assert predict_next(loaded, event.x[:5]).tolist() == predict_next(model, event.x[:5]).tolist()

    short = cfg.model_copy(update={"epochs": 2})
    assert train_transition(train[:4], heldout[:1], short, seed=3)[1] == train_transition(train[:4], heldout[:1], short, seed=3)[1]
