"""jaxsched.optim.lr_scheduler against torch.optim.lr_scheduler: bit-identical lrs."""

from __future__ import annotations

import copy
import warnings

import jax.numpy as jnp
import pytest
import torch
from torch.optim import lr_scheduler as T

import jaxsched.schedules as S
from jaxsched import optim
from jaxsched.optim import lr_scheduler as J

GRADS = {"a": jnp.ones(2), "b": jnp.ones(3)}


def make_pair(opt: str = "SGD", second_lr: float = 0.05):
    """A jaxsched and a torch optimizer with two groups (lr 0.1 and ``second_lr``)."""
    kw = dict(lr=0.1, momentum=0.9) if opt == "SGD" else dict(lr=0.1)
    ours = getattr(optim, opt)(
        [{"params": {"a": jnp.zeros(2)}}, {"params": {"b": jnp.zeros(3)}, "lr": second_lr}], **kw
    )
    ta, tb = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    theirs = getattr(torch.optim, opt)(
        [{"params": [("a", ta)]}, {"params": [("b", tb)], "lr": second_lr}], **kw
    )  # named, as torch's named_parameters(): param_names in the groups, like ours
    for t in (ta, tb):
        t.grad = torch.ones_like(t)
    return ours, theirs


def both_step(ours, theirs):
    ours.step(GRADS)
    theirs.step()


def inv(e):
    return 1.0 / (1.0 + 0.05 * e)


# (id, scheduler name, args, kwargs, optimizer, steps)
CASES = [
    ("lambda", "LambdaLR", (inv,), {}, "SGD", 40),
    ("lambda-list", "LambdaLR", ([inv, lambda e: 0.9**e],), {}, "SGD", 40),
    ("multiplicative", "MultiplicativeLR", (lambda e: 0.95,), {}, "SGD", 40),
    ("step", "StepLR", (3, 0.5), {}, "SGD", 40),
    ("multistep", "MultiStepLR", ([5, 5, 9, 20],), {"gamma": 0.3}, "SGD", 40),
    ("constant", "ConstantLR", (), {"factor": 0.5, "total_iters": 8}, "SGD", 20),
    ("linear", "LinearLR", (0.25, 1.0, 8), {}, "SGD", 20),
    ("exponential", "ExponentialLR", (0.9,), {}, "SGD", 40),
    ("polynomial", "PolynomialLR", (10, 1.5), {}, "SGD", 20),
    ("cosine", "CosineAnnealingLR", (10,), {"eta_min": 0.01}, "SGD", 60),
    ("cawr", "CosineAnnealingWarmRestarts", (3, 2), {"eta_min": 1e-3}, "SGD", 60),
    ("cyclic", "CyclicLR", (0.01, 0.1), {"step_size_up": 4, "mode": "triangular2"}, "SGD", 40),
    ("cyclic-adam-exp", "CyclicLR", (0.01, [0.1, 0.2]),
     {"step_size_up": 5, "mode": "exp_range", "gamma": 0.99}, "Adam", 40),
    ("onecycle", "OneCycleLR", (0.5,), {"total_steps": 40}, "SGD", 39),
    ("onecycle-3-linear-adam", "OneCycleLR", ([0.5, 0.2],),
     {"epochs": 4, "steps_per_epoch": 10, "three_phase": True, "anneal_strategy": "linear"},
     "Adam", 40),
]  # fmt: skip
IDS = [c[0] for c in CASES]


def build(name, args, kwargs, ours, theirs):
    return getattr(J, name)(ours, *args, **kwargs), getattr(T, name)(theirs, *args, **kwargs)


def record(opt_ours, opt_theirs, s_ours, s_theirs, steps, write_at=None):
    ours, theirs = [list(s_ours.get_last_lr())], [list(s_theirs.get_last_lr())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(steps):
            if i == write_at:
                for g_o, g_t in zip(opt_ours.param_groups, opt_theirs.param_groups, strict=True):
                    g_o["lr"] = g_t["lr"] = 0.5 * g_t["lr"] + 0.01
            both_step(opt_ours, opt_theirs)
            s_ours.step()
            s_theirs.step()
            ours.append(list(s_ours.get_last_lr()))
            theirs.append(list(s_theirs.get_last_lr()))
    return ours, theirs


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_lrs_and_groups_are_bit_identical_to_torch(case):
    _, name, args, kwargs, opt, steps = case
    o, t = make_pair(opt)
    so, st = build(name, args, kwargs, o, t)
    assert list(o.param_groups[1]) == list(t.param_groups[1])  # initial_lr etc. appended
    ours, theirs = record(o, t, so, st, steps, write_at=steps // 3)  # with a manual lr write
    assert ours == theirs
    for g_o, g_t in zip(o.param_groups, t.param_groups, strict=True):
        assert {k: g_o[k] for k in g_o if k != "params"} == {
            k: g_t[k] for k in g_t if k != "params"
        }


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_resume_from_our_and_torchs_state_dict(case):
    _, name, args, kwargs, opt, steps = case
    o, t = make_pair(opt)
    so, st = build(name, args, kwargs, o, t)
    half = steps // 2
    record(o, t, so, st, half)
    saved_ours, saved_theirs = so.state_dict(), st.state_dict()
    assert sorted(saved_ours) == sorted(saved_theirs)
    opt_ours, opt_theirs = o.state_dict(), t.state_dict()
    _, uninterrupted = record(o, t, so, st, steps - half)
    # torch's documented order: build the scheduler, load the optimizer, load the scheduler;
    # ours resumes from its own state dict and from torch's.
    for saved in (saved_ours, saved_theirs):
        o2, t2 = make_pair(opt)
        so2, st2 = build(name, args, kwargs, o2, t2)
        o2.load_state_dict(opt_ours)
        t2.load_state_dict(opt_theirs)
        so2.load_state_dict(copy.deepcopy(saved))  # torch's own loader mutates its argument
        st2.load_state_dict(copy.deepcopy(saved_theirs))
        resumed, _ = record(o2, t2, so2, st2, steps - half)
        assert resumed == uninterrupted


def test_two_schedulers_on_one_optimizer_and_chained():
    o, t = make_pair()
    pairs = [build("LinearLR", (0.1, 1.0, 5), {}, o, t), build("ExponentialLR", (0.9,), {}, o, t)]
    lr_o, lr_t = [], []
    for _ in range(15):
        both_step(o, t)
        for so, st in pairs:
            so.step()
            st.step()
        lr_o.append(o.param_groups[0]["lr"])
        lr_t.append(t.param_groups[0]["lr"])
    assert lr_o == lr_t
    o, t = make_pair()
    co = J.ChainedScheduler([J.StepLR(o, 2, 0.5), J.CosineAnnealingLR(o, 10, 0.01)])
    ct = T.ChainedScheduler([T.StepLR(t, 2, 0.5), T.CosineAnnealingLR(t, 10, 0.01)])
    ours, theirs = record(o, t, co, ct, 25)
    assert ours == theirs
    assert sorted(co.state_dict()) == sorted(ct.state_dict())


@pytest.mark.parametrize("milestones", [[4], [0], [3, 3], [3, 8]])
def test_sequential_restarts_children_like_torch(milestones):
    o, t = make_pair()

    def children(opt, L):
        made = [L.LinearLR(opt, 0.1, 1.0, 4), L.ExponentialLR(opt, 0.9), L.StepLR(opt, 2, 0.5)]
        return made[: len(milestones) + 1]

    so = J.SequentialLR(o, children(o, J), milestones)
    st = T.SequentialLR(t, children(t, T), milestones)
    ours, theirs = record(o, t, so, st, 20)
    assert ours == theirs
    assert sorted(so.state_dict()) == sorted(st.state_dict())


ROP = [
    ("flat", dict(patience=2), [1.0] * 12),
    ("patience0-eps", dict(patience=0), [1.0] * 12),
    ("cooldown", dict(patience=2, cooldown=2), [1.0] * 15),
    ("rel-tiny-improvements", dict(patience=1), [1.0 - 5e-5 * i for i in range(12)]),
    ("abs", dict(patience=1, threshold=1e-5, threshold_mode="abs"),
     [1 - 5e-5 * i for i in range(12)]),
    ("max-abs", dict(mode="max", threshold=0.2, threshold_mode="abs", patience=1),
     [0.1 * i for i in range(12)]),
    ("min-lr-list", dict(factor=0.5, patience=0, min_lr=[0.02, 0.001]), [1.0] * 12),
    ("nan-metric", dict(patience=1), [1.0, float("nan"), float("nan"), 0.5, float("nan")] * 2),
]  # fmt: skip


@pytest.mark.parametrize("kwargs, metrics", [r[1:] for r in ROP], ids=[r[0] for r in ROP])
def test_reduce_lr_on_plateau_metric_sequences(kwargs, metrics):
    o, t = make_pair()
    so, st = J.ReduceLROnPlateau(o, **kwargs), T.ReduceLROnPlateau(t, **kwargs)
    for m in metrics:
        both_step(o, t)
        so.step(m)
        st.step(m)
        assert so.get_last_lr() == st.get_last_lr()
        assert so.num_bad_epochs == st.num_bad_epochs
    assert sorted(so.state_dict()) == sorted(st.state_dict())
    o.param_groups[0]["lr"] = t.param_groups[0]["lr"] = 0.7  # a hand-written lr is honoured
    for _ in range(4):
        so.step(1.0)
        st.step(1.0)
    assert so.get_last_lr() == st.get_last_lr()


def test_warnings_like_torch():
    o, _ = make_pair()
    sched = J.StepLR(o, 2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()
    with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
        sched.get_lr()
    with pytest.warns(UserWarning, match="epoch parameter in `scheduler.step\\(\\)`"):
        sched.step(5)
    assert sched.get_last_lr()[0] == pytest.approx(0.1 * 0.1**2)  # closed form at epoch 5
    o.step(GRADS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        J.ExponentialLR(o, 0.9).step()  # optimizer stepped first: silent


ERRORS = [
    (lambda o: J.StepLR(None, 3), TypeError, "NoneType is not an Optimizer"),
    (lambda o: J.LambdaLR(None, inv), AttributeError, "has no attribute 'param_groups'"),
    (lambda o: J.LRScheduler(o), NotImplementedError, "^$"),
    (lambda o: J.StepLR(o, 3, last_epoch=4), KeyError, "initial_lr' is not specified"),
    (lambda o: J.LambdaLR(o, [inv]), ValueError, "Expected 2 lr_lambdas, but got 1"),
    (lambda o: J.MultiplicativeLR(o, 0.9), TypeError, "lr_lambda should be a function"),
    (lambda o: J.ConstantLR(o, 1.5), ValueError, "between 0 and 1"),
    (lambda o: J.LinearLR(o, 0.0), ValueError, "Starting multiplicative factor"),
    (lambda o: J.LinearLR(o, 0.5, 1.5), ValueError, "Ending multiplicative factor"),
    (lambda o: J.CosineAnnealingWarmRestarts(o, 0), ValueError, "positive integer T_0, but got 0"),
    (lambda o: J.CosineAnnealingWarmRestarts(o, 2, 1.5), ValueError, "T_mult >= 1, but got 1.5"),
    (lambda o: J.CyclicLR(o, 0.01, 0.1, mode="foo"), ValueError, "mode is invalid"),
    (lambda o: J.CyclicLR(o, [0.01], 0.1), ValueError, "base_lr has 1 values, param_groups has 2"),
    (lambda o: J.CyclicLR(optim.Adagrad({"a": jnp.ones(1)}), 0.01, 0.1), ValueError,
     "must support momentum or beta1"),
    (lambda o: J.OneCycleLR(o, 0.1), ValueError, "either total_steps OR"),
    (lambda o: J.OneCycleLR(o, 0.1, total_steps=10, pct_start=1), ValueError, "pct_start"),
    (lambda o: J.OneCycleLR(o, 0.1, 10, anneal_strategy="foo"), ValueError, "instead got foo"),
    (lambda o: J.ReduceLROnPlateau(o, factor=1.0), ValueError, "Factor should be < 1.0."),
    (lambda o: J.ReduceLROnPlateau(o, mode="foo"), ValueError, "mode foo is unknown!"),
    (lambda o: J.ReduceLROnPlateau(o, threshold_mode="foo"), ValueError, "threshold mode foo"),
    (lambda o: J.ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "expected 2 min_lrs, got 1"),
    (lambda o: J.SequentialLR(o, [], []), ValueError, "at least one scheduler, but got no"),
    (lambda o: J.SequentialLR(o, [J.StepLR(o, 2), J.ReduceLROnPlateau(o)], [3]), ValueError,
     "does not support `ReduceLROnPlateau`"),
    (lambda o: J.SequentialLR(o, [J.StepLR(o, 2), J.StepLR(o, 3)], [3, 4]), ValueError,
     "number of schedulers 2 and the number of milestones to be equal to 2"),
    (lambda o: J.ChainedScheduler([]), ValueError, "at least one scheduler to be chained"),
    (lambda o: J.ChainedScheduler([J.StepLR(o, 2), J.StepLR(make_pair()[0], 2)]), ValueError,
     "belong to the same optimizer"),
]  # fmt: skip


@pytest.mark.parametrize("call, exc, match", ERRORS, ids=[f"err{i}" for i in range(len(ERRORS))])
def test_errors_like_torch(call, exc, match):
    o, _ = make_pair()
    with pytest.raises(exc, match=match):
        call(o)


def test_onecycle_refuses_to_step_past_the_end():
    o, _ = make_pair()
    sched = J.OneCycleLR(o, 0.1, total_steps=3)
    for _ in range(3):
        o.step(GRADS)
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 4 times"):
        sched.step()


CLOSED_FORMS = [
    ("StepLR", (3, 0.5), lambda: S.step_lr(0.1, 3, 0.5)),
    ("MultiStepLR", ([4, 4, 9], 0.3), lambda: S.multistep_lr(0.1, [4, 4, 9], 0.3)),
    ("ConstantLR", (0.5, 6), lambda: S.constant_lr(0.1, 0.5, 6)),
    ("LinearLR", (0.2, 0.9, 7), lambda: S.linear_lr(0.1, 0.2, 0.9, 7)),
    ("ExponentialLR", (0.93,), lambda: S.exponential_lr(0.1, 0.93)),
    ("PolynomialLR", (9, 1.7), lambda: S.polynomial_lr(0.1, 9, 1.7)),
    ("CosineAnnealingLR", (7, 0.01), lambda: S.cosine_annealing_lr(0.1, 7, 0.01)),
]


@pytest.mark.parametrize("name, args, functional", CLOSED_FORMS, ids=[c[0] for c in CLOSED_FORMS])
def test_closed_form_and_chainable_rule_and_functional_schedule_agree(x64, name, args, functional):
    """The stateful chainable rule, its closed form (``step(epoch)``, torch's path) and the
    functional schedule are three computations of one curve; they agree to 1e-12."""
    o, _ = make_pair()
    grads = {k: jnp.ones_like(v) for k, v in o.params.items()}  # float64 under x64
    chain = getattr(J, name)(o, *args)
    closed_o, closed_t = make_pair()
    closed = getattr(J, name)(closed_o, *args)
    jumped = getattr(T, name)(closed_t, *args)
    schedule = functional()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(1, 40):
            o.step(grads)
            chain.step()
            closed.step(epoch)
            jumped.step(epoch)
            assert closed.get_last_lr() == jumped.get_last_lr()  # bit-identical to torch
            value = float(schedule(epoch))
            assert chain.get_last_lr()[0] == pytest.approx(value, rel=1e-12, abs=1e-15)
            assert closed.get_last_lr()[0] == pytest.approx(value, rel=1e-12, abs=1e-15)


def test_cawr_fractional_epochs_like_torch():
    o, t = make_pair()
    so, st = J.CosineAnnealingWarmRestarts(o, 3, 2), T.CosineAnnealingWarmRestarts(t, 3, 2)
    for epoch in (0.5, 1.25, 4.5, 9.0, 20.75):
        so.step(epoch)
        st.step(epoch)
        assert so.get_last_lr() == st.get_last_lr() and so.T_cur == st.T_cur
    so.step()
    st.step()
    assert so.get_last_lr() == st.get_last_lr() and so.last_epoch == st.last_epoch


def test_scheduler_step_moves_nothing_to_the_device():
    import jax

    o, _ = make_pair()
    sched = J.OneCycleLR(o, 0.1, total_steps=50)
    o.step(GRADS)
    with jax.transfer_guard("disallow"):  # any host<->device transfer raises here
        lrs = []
        for _ in range(5):
            sched.step()
            lrs.append(o.param_groups[0]["lr"])  # reading a value needs no device either
    assert all(isinstance(lr, float) for lr in lrs)
    assert lrs[-1] == sched.get_last_lr()[0] and len(set(lrs)) == 5  # the schedule moved


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(total_steps=0),
        dict(total_steps=10.0),
        dict(epochs=2),
        dict(epochs=-1, steps_per_epoch=3),
        dict(epochs=2, steps_per_epoch=0),
        dict(total_steps=10, pct_start=1.5),
        dict(total_steps=10, pct_start=1),
        dict(total_steps=10, anneal_strategy="cosine"),
    ],
)
def test_one_cycle_arguments_are_checked_once_for_both_apis(kwargs):
    """The functional schedule and the stateful scheduler share one check: same errors, and
    torch's exact message from the stateful one."""
    with pytest.raises(ValueError) as functional:
        S.one_cycle_lr(0.1, **kwargs)
    opt = optim.SGD({"w": jnp.ones(2)}, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError) as stateful:
        J.OneCycleLR(opt, max_lr=0.1, **kwargs)
    # one check: the same text but for how the value is shown (repr in the functional API)
    assert str(stateful.value).split(" got")[0] == str(functional.value).split(" got")[0]
    param = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError) as theirs:
        T.OneCycleLR(torch.optim.SGD([param], lr=0.1, momentum=0.9), max_lr=0.1, **kwargs)
    assert str(theirs.value) == str(stateful.value)


class _Scale:
    """A callable object with state (torch saves its ``__dict__``)."""

    def __init__(self, k: float = 3.0) -> None:
        self.k = k

    def __call__(self, x):
        return 1 / (x / self.k + 1)


def _plain_scale(x):
    return 0.9**x


@pytest.mark.parametrize(
    "fn", [_plain_scale, lambda x: 0.5, _Scale()], ids=["def", "lambda", "object"]
)
def test_callables_in_state_dicts_follow_torch(fn):
    """None for a function or lambda, the object's __dict__ for a callable object (LambdaLR,
    MultiplicativeLR, CyclicLR); the state dict pickles; a torch CyclicLR state dict with an
    object's __dict__ updates our scale_fn and the next step works."""
    import pickle

    t = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([t], lr=0.1, momentum=0.9)
    opt = optim.SGD({"w": jnp.zeros(2)}, lr=0.1, momentum=0.9)
    pairs = [
        (T.CyclicLR(topt, 0.01, 0.1, step_size_up=3, scale_fn=fn),
         J.CyclicLR(opt, 0.01, 0.1, step_size_up=3, scale_fn=fn), "_scale_fn_custom"),
        (T.LambdaLR(topt, fn), J.LambdaLR(opt, fn), "lr_lambdas"),
        (T.MultiplicativeLR(topt, fn),
         J.MultiplicativeLR(opt, fn), "lr_lambdas"),
    ]  # fmt: skip
    for theirs, ours, key in pairs:
        assert ours.state_dict()[key] == theirs.state_dict()[key]
        pickle.dumps(ours.state_dict())
    if isinstance(fn, _Scale):
        t2 = torch.zeros(2, requires_grad=True)
        topt2 = torch.optim.SGD([t2], lr=0.1, momentum=0.9)
        saved = T.CyclicLR(topt2, 0.01, 0.1, step_size_up=3, scale_fn=_Scale(7.0)).state_dict()
        mine = _Scale()
        opt2 = optim.SGD({"w": jnp.zeros(2)}, lr=0.1, momentum=0.9)
        sched = J.CyclicLR(opt2, 0.01, 0.1, step_size_up=3, scale_fn=mine)
        sched.load_state_dict(saved)
        assert sched._scale_fn_custom is mine and mine.k == 7.0
        opt2.step({"w": jnp.zeros(2)})
        sched.step()  # the dict was not stored in the function's place


def test_step_replaced_after_the_scheduler_warns_as_torch():
    opt = optim.SGD({"w": jnp.ones(2)}, lr=0.1)
    sched = J.StepLR(opt, 2)
    original = opt.step
    opt.step = lambda grads: original(grads)  # e.g. a user's wrapper, put on afterwards
    opt.step({"w": jnp.ones(2)})
    with pytest.warns(UserWarning, match=r"Seems like `optimizer\.step\(\)` has been overridden"):
        sched.step()
    # replaced before the scheduler was built: no warning, as torch
    opt2 = optim.SGD({"w": jnp.ones(2)}, lr=0.1)
    original2 = opt2.step
    opt2.step = lambda grads: original2(grads)
    sched2 = J.StepLR(opt2, 2)
    opt2.step({"w": jnp.ones(2)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched2.step()
