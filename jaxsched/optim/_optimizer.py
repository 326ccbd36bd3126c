"""The torch-like stateful optimizer: torch's surface and bookkeeping over step engines.

The class holds the parameter tree, the host mirror of ``param_groups`` and the groups'
states; the maths lives in the functional transforms (:mod:`jaxsched.transforms`) and in the
CPU kernels, each group run by one engine (:mod:`._engines`), with the numeric
hyperparameters of all groups in one vector (:mod:`._hyper`) and every array placed like the
parameters (:mod:`._placement`).  The jitted programs (``step``, train steps) are in
:mod:`._programs`, torch's ``state_dict`` layout in :mod:`._state_dict`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._grouped import GroupedState, _is_number, grouped, split_hyperparams
from ..transforms._common import float32_array
from ..transforms._per_parameter import per_parameter_factory, spread_state
from ..transforms._spec import TorchSpec
from . import _engines, _param_names, _placement, _programs, _state_dict, _trees
from ._hooks import Hooks
from ._hyper import HyperVector
from ._param_group import ParamGroup
from ._train_step import TrainStep


class Optimizer(Hooks):
    """Base class of the torch-like optimizers (``jaxsched.optim.SGD``, ``Adam``, ...).

    ``params`` is a pytree of float arrays (one group) or torch's list of group dicts whose
    ``"params"`` are parts of one parameter tree.  ``tx`` is ``jaxsched.grouped(<transform>,
    labels, groups)`` and ``opt_state`` its state; each group's update runs on one engine
    (``engine_info()``): the CPU kernels, on each device's shards of sharded parameters, or the
    transform under XLA.  Every numeric hyperparameter travels in one small vector, so writing
    ``group["lr"]`` never recompiles.  ``step(grads)`` runs one jitted, donated update and
    returns the new params.  Params, state and hyperparameters keep the parameters' devices and
    shardings (``jax.sharding.NamedSharding`` over a ``Mesh``, or one device) on every path.
    """

    # what torch says about this optimizer (keys, state entries, kernel), beside its maths
    spec: ClassVar[TorchSpec]

    def __init__(
        self, params: Any, defaults: Mapping[str, Any], options: Mapping[str, Any] | None = None
    ) -> None:
        self.defaults = dict(defaults)
        self._options = dict(options or {})  # ours beyond torch's signature (spec.options)
        accepted = set(inspect.signature(self.spec.factory).parameters)
        self._hyperparameter_names = tuple(k for k in self.spec.keys if k in accepted)
        self.spec.factory(**self._factory_kwargs(self.defaults))  # torch's errors, now
        if isinstance(params, (list, tuple)) and len(params) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if isinstance(params, (list, tuple)) and all(isinstance(g, Mapping) for g in params):
            for i, spec in enumerate(params):
                if "params" not in spec:  # torch: KeyError too
                    raise KeyError(f"param_groups[{i}] has no 'params' entry: {dict(spec)!r}")
        specs = list(params) if _trees.is_group_list(params) else [{"params": params}]
        # torch's named form, [(name, array), ...]: a tree of nested dicts from the dotted names
        # nnx states as their pure dicts (their paths, without nnx's ``.value``)
        specs = [
            {**spec, "params": _trees.plain(_param_names.from_pairs(spec["params"]))}
            for spec in specs
        ]
        trees = [spec["params"] for spec in specs]
        union = _trees.merge(trees)
        _trees.check_float_leaves(union)
        if not jax.tree.leaves(union):
            raise ValueError("optimizer got an empty parameter list")
        # Copies: step() donates its buffers, which must not be the caller's arrays.
        self._params = jax.tree.map(lambda x: jnp.array(x, copy=True), union)
        self._group_trees = [_trees.skeleton(t) for t in trees]  # paths, not the arrays
        self.param_groups: list[ParamGroup] = []
        for spec in specs:
            self.param_groups.append(ParamGroup(self, len(self.param_groups), self._values(spec)))
        self._dirty: set[tuple[int, str]] = set()
        self._program_cache: dict[Any, dict[Any, _programs.Programs]] = {}
        self.steps_taken = 0  # lets schedulers warn when they are stepped first, as torch does
        # torch's per-parameter step counts, entered at the first gradient that is None (or a
        # load that needs them): each leaf keeps its own state (transforms.per_parameter)
        self._per_parameter = False
        self._skip_masks: dict[tuple[int, ...], Any] = {}  # None pattern -> mask, placed
        self._skip_zeros: dict[int, Any] = {}  # leaf -> its zero gradient, placed like it
        self._build(previous=None)

    # -- construction ---------------------------------------------------------------------------

    def _values(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """torch's add_param_group for named parameters: the group's own keys,
        ``param_names`` (the leaves' dotted tree paths), then the missing defaults."""
        values = {k: v for k, v in spec.items() if k != "params"}
        names = _param_names.names_of(spec["params"])
        if "param_names" in values and list(values["param_names"]) != names:
            raise ValueError(
                f"a group's param_names are its tree paths {names}, got "
                f"{list(values['param_names'])}"
            )
        values["param_names"] = names
        for key, default in self.defaults.items():
            values.setdefault(key, default)
        return values

    @classmethod
    def _arguments(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """``defaults`` in torch's key order from a constructor's arguments (its ``locals()``)
        and the spec's fixed values."""
        return {k: given[k] if k in given else cls.spec.fixed[k] for k in cls.spec.keys}

    def _factory_kwargs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        kwargs = {k: values[k] for k in self._hyperparameter_names if k in values}
        kwargs.update(self._options)
        for key in self.spec.from_constructor:  # torch ignores the group's own value
            kwargs[key] = self.defaults[key]
        return kwargs

    def _factory(self) -> Callable[..., optax.GradientTransformation]:
        """The groups' transform factory: the spec's, per parameter in that mode."""
        if not self._per_parameter:
            return self.spec.factory
        return per_parameter_factory(self.spec.factory)

    def _transform(self, values: Sequence[Mapping[str, Any]]) -> optax.GradientTransformation:
        labels = _trees.labels_for(self._params, self._group_indices)
        kwargs = {g: self._factory_kwargs(v) for g, v in enumerate(values)}
        return grouped(self._factory(), labels, kwargs, static_args=self.spec.static_args)

    def _zero_decay_groups(self) -> set[int]:
        """XLA-engine groups whose weight decay is exactly 0 now: the zero-decay rule skips the
        term."""
        if "weight_decay" not in self._hyperparameter_names:
            return set()
        return {
            g
            for g, (pg, e) in enumerate(zip(self.param_groups, self._engines, strict=True))
            if e.name == "xla" and pg._values["weight_decay"] == 0
        }

    def _build(self, previous: Mapping[int, Any] | None) -> None:
        """(Re)build the transform, the groups' engines, their state and the hyperparameter
        vector; keep the ``previous`` per-group states (the transform's layout) where given
        (all groups' when the structure allows, else an error)."""
        self._group_indices = _trees.group_leaf_indices(self._params, self._group_trees)
        leaves, self._treedef = jax.tree_util.tree_flatten(self._params)
        self._leaves = leaves  # what the jitted programs take and return (a list: cheap to pass)
        self._dict_tree = _trees.DictReader.of(self._params)  # reads grads fast, if it applies
        self._signature = [(p.shape, p.dtype) for p in leaves]
        values = [pg._values for pg in self.param_groups]
        # hyperparameters given as float32 arrays: their derived scalars are float32 (torch's
        # float32 tensors), a structural property of the programs
        self._float32_keys = {
            (g, k) for g, v in enumerate(values) for k in self._hyperparameter_names
            if float32_array(v.get(k))
        }  # fmt: skip
        self.tx = self._transform(values)
        # Shapes only: each engine allocates its own state, placed like the parameters.
        shapes = jax.eval_shape(self.tx.init, self._params)
        if previous is not None:
            for g, old in previous.items():
                if jax.tree.structure(old) != jax.tree.structure(shapes.inner[g]):
                    raise ValueError(
                        f"this change to param_groups[{g}] alters the optimizer state's layout "
                        f"(e.g. amsgrad or centered switched); build a new optimizer instead"
                    )
        slots = {
            g: {k: (tuple(x is not None for x in v) if isinstance(v, tuple) else None)
                for k, v in hyper.items()}
            for g, hyper in shapes.hyperparams.items()
        }  # fmt: skip
        self._engines = [
            _engines.choose(
                self.spec, g, self._factory_kwargs(values[g]), values[g],
                [leaves[i] for i in idx], shapes.inner[g], slots[g], self._hyperparameter_names,
                per_parameter=self._factory() if self._per_parameter else None,
            )
            for g, idx in enumerate(self._group_indices)
        ]  # fmt: skip
        derive = [e.derive for e in self._engines]
        # The numeric hyperparameters of all groups travel as one small vector built from the
        # host mirror, re-uploaded only after a write (one transfer, never a recompile).
        self._vector = HyperVector(slots, values, derive, _placement.replicated(leaves[0]))
        self._inner = {
            g: e.init([leaves[i] for i in self._group_indices[g]])
            if previous is None or g not in previous
            else e.from_tree(previous[g])
            for g, e in enumerate(self._engines)
        }
        self._references = _programs.References(self._treedef)
        self._skip_masks, self._skip_zeros = {}, {}
        self._callbacks: dict[Any, bool] = {}  # train-step key -> its loss calls back
        # Two update rules: the general one (every numeric value read at run time) and, when
        # some XLA group's weight decay is exactly 0, one that skips that term (a coupled decay
        # term makes XLA read the parameters in two more passes: +12-17% per Adam step even at
        # 0; the kernels skip it at run time).
        self._zero_decay_pattern = self._zero_decay_groups()
        # entry point -> its jitted rules; kept per configuration, so that a load or a flag
        # switched back to one seen before compiles nothing.
        self._programs = _programs.cached(self._program_cache, self._configuration())
        for programs in self._programs.values():
            programs.forget()

    def _configuration(self) -> Any:
        """Everything the compiled programs depend on besides the values in the vector (a
        hashable key), or a fresh object when some static value is unhashable."""
        statics = []
        for pg in self.param_groups:
            kwargs = self._factory_kwargs(pg._values)
            static = split_hyperparams(kwargs, self.spec.static_args)[1]
            statics.append(tuple(sorted(static.items())))
        key = (
            self._treedef,
            tuple(self._signature),
            tuple(tuple(idx) for idx in self._group_indices),
            tuple(leaf.sharding if leaf.committed else None for leaf in self._leaves),
            tuple(e.info for e in self._engines),
            tuple(statics),
            tuple((g, tuple(names.items())) for g, names in self._vector.slots.items()),
            frozenset(self._zero_decay_pattern),
            frozenset(self._float32_keys),
            self._per_parameter,
        )
        try:
            hash(key)
        except TypeError:
            return object()
        return key

    def _rules(self, in_place: bool) -> tuple[_programs.Update, _programs.Update | None]:
        rule = functools.partial(
            _programs.engine_update, self._engines, self._group_indices, self._vector.unpack,
            in_place,
        )  # fmt: skip
        pattern = frozenset(self._zero_decay_pattern)
        return rule(frozenset()), (rule(pattern) if pattern else None)

    def _programs_for(
        self, key: Any, entry: Callable[[Callable], Callable], in_place: bool,
        donate: tuple[int, ...],
    ) -> _programs.Programs:  # fmt: skip
        """Entry point ``key``'s programs (jitted from ``entry`` at first use after a build).
        ``in_place``: the kernels write the new parameters over the old (which ``donate`` must
        then hold, as argument 0); else into new buffers.  ``donate``: the arguments the
        program consumes (the parameters 0, the state 1)."""
        programs = self._programs.get((key, in_place, donate))
        if programs is None:
            programs = self._programs[(key, in_place, donate)] = _programs.Programs(
                entry, *self._rules(in_place), donate
            )
        return programs

    def _zero_decay_applies(self) -> bool:
        return self._zero_decay_groups() == self._zero_decay_pattern

    def _step_program(self) -> _programs.Programs:
        """``step``'s program: in place over donated parameters, unless a parameter array is
        held outside the optimizer (then new buffers, and the held arrays keep their values)."""
        signature, owner = self._signature, weakref.ref(self)

        def mismatch(grads: Any) -> ValueError:
            # through a weak reference: the programs are cached on the optimizer, and a
            # strong one would keep it alive past `del opt` until the next cycle collection
            optimizer = owner()
            if optimizer is None:
                return ValueError("grads do not match the parameters")
            return optimizer._mismatch(grads)

        def entry(update: Callable) -> Callable:
            return _programs.checked_step(update, signature, mismatch)

        # in the per-parameter mode the program also takes the mask of the leaves with a
        # gradient: every pattern of None gradients runs the same program
        key = "masked step" if self._per_parameter else "step"
        if self._references.shared(self._leaves):
            return self._programs_for(key, entry, False, (1,))
        return self._programs_for(key, entry, True, (0, 1))

    def _grad_leaves(self, grads: Any) -> list[Any]:
        """``grads``' leaves in the parameters' order, ``None`` where a parameter has no
        gradient (structure checked here, leaves when the step is traced)."""
        grad_leaves = None if self._dict_tree is None else self._dict_tree.leaves(grads)
        if grad_leaves is None:
            grad_leaves, treedef = jax.tree_util.tree_flatten(grads)
            if treedef != self._treedef:
                grads = _trees.plain(grads)  # e.g. nnx.grad's State for parameters given as one
                grad_leaves, treedef = jax.tree_util.tree_flatten(grads, is_leaf=_is_none)
                if treedef != self._treedef:
                    raise self._mismatch(grads)
        return grad_leaves

    def _step_arguments(self, grad_leaves: list[Any]) -> tuple:
        """``step``'s program arguments; gradients that are ``None`` switch the optimizer to
        per-parameter step counts (once) and become a mask plus zeros placed like their
        parameters (kept per pattern: a pattern seen before transfers nothing)."""
        pattern = tuple(i for i, g in enumerate(grad_leaves) if g is None)
        if pattern and not self._per_parameter:
            if not self.spec.skips_missing:
                raise ValueError(
                    f"{type(self).__name__}.step: gradients that are None (parameters "
                    f"{list(pattern)} in flatten order) are not supported by this optimizer"
                )
            self._enter_per_parameter()
        args = (self._leaves, self._inner, grad_leaves, self._vector.current())
        if not self._per_parameter:
            return args
        masks, zeros = self._skip_masks, self._skip_zeros
        mask = masks.get(pattern)
        if mask is None:  # a few bytes per pattern seen
            mask = masks[pattern] = _placement.put(
                np.array([g is not None for g in grad_leaves]),
                _placement.replicated(self._leaves[0]),
            )
        for i in pattern:  # one zero array per parameter, shared by every pattern
            if i not in zeros:
                p = self._leaves[i]
                zeros[i] = jnp.zeros(p.shape, p.dtype, device=p.sharding if p.committed else None)
        filled = [zeros[i] if g is None else g for i, g in enumerate(grad_leaves)]
        return (self._leaves, self._inner, filled, self._vector.current(), mask)

    def _enter_per_parameter(self) -> None:
        """Switch every group to per-parameter state (each leaf its own step count), keeping
        the state: torch's layout for a model where some parameters miss gradients."""
        self._sync()
        with self._all_or_nothing(keep_values=True):
            previous = {
                g: spread_state(state, len(self._group_indices[g]))
                for g, state in self._tree_inner().items()
            }
            self._per_parameter = True
            self._build(previous)

    def lower_step(self, grads: Any) -> Any:
        """The program ``step(grads)`` would run, lowered (``jax.stages.Lowered``): inspect its
        HLO (``.as_text()``, ``.compile().as_text()``) or its cost.  Runs nothing (gradients
        that are ``None`` switch to per-parameter state first, as ``step`` would)."""
        self._sync()
        args = self._step_arguments(self._grad_leaves(grads))
        return self._step_program().lower(args, self._zero_decay_applies)

    def engine_info(self) -> list[_engines.EngineInfo]:
        """For each parameter group, which engine runs its update and why: ``"kernel"`` (the
        one-pass CPU kernels, on each device's shards) or ``"xla"`` (the functional transform
        under XLA), with the reason and the number of devices the group spans."""
        self._sync()
        return [e.info for e in self._engines]

    def _mismatch(self, grads: Any) -> ValueError:
        """The error for ``grads`` (a tree, or a list of leaves in the parameters' order) that
        do not match the parameters."""
        if isinstance(grads, list) and len(grads) == self._treedef.num_leaves:
            grads = self._treedef.unflatten(grads)
        problem = _trees.first_mismatch(self._params, grads) or "different leaf types"
        return ValueError(f"grads do not match the parameters: {problem}")

    # -- the torch surface ----------------------------------------------------------------------

    @property
    def params(self) -> Any:
        """The current parameter tree (the union of the groups' trees)."""
        return self._params

    @params.setter
    def params(self, new: Any) -> None:
        """Replace the parameter values (e.g. weights loaded from a checkpoint); structure,
        shapes and dtypes must match.  The optimizer state is kept."""
        new = _trees.plain(new)
        problem = _trees.first_mismatch(self._params, new)
        if problem is not None:
            raise ValueError(f"new params do not match the optimizer's: {problem}")
        # Copies placed where the current parameters are (their shardings are the state's).
        self._leaves = [
            _placement.put(x, old.sharding if old.committed else None)
            for x, old in zip(self._treedef.flatten_up_to(new), self._leaves, strict=True)
        ]
        self._params = self._treedef.unflatten(self._leaves)

    @property
    def opt_state(self) -> GroupedState:
        """The :func:`jaxsched.grouped` state: the buffers and the groups' numeric
        hyperparameters (as arrays built from ``param_groups``)."""
        self._sync()
        hyper = self._vector.unpack(self._vector.current())[0]
        return GroupedState(self._tree_inner(), hyper)

    @opt_state.setter
    def opt_state(self, state: GroupedState) -> None:
        """Adopt a state produced outside (e.g. by your own jitted train step), placed like the
        parameters; the groups' numeric hyperparameters are read back from it (one
        device-to-host transfer)."""
        self._sync()
        # Checked whole before anything changes: structure, then every array's shape and dtype
        # (the kernels write into these buffers: a wrong dtype would corrupt memory).
        expected = GroupedState(
            jax.eval_shape(self._tree_inner), self._vector.unpack(self._vector.current())[0]
        )
        if jax.tree.structure(state) != jax.tree.structure(expected):
            raise ValueError("opt_state must have the structure of optimizer.opt_state")
        got = jax.tree_util.tree_flatten_with_path(state)[0]
        for (path, value), want in zip(got, jax.tree.leaves(expected), strict=True):
            shape, dtype = np.shape(value), getattr(value, "dtype", np.asarray(value).dtype)
            if shape != want.shape or np.dtype(dtype) != np.dtype(want.dtype):
                raise ValueError(
                    f"opt_state{jax.tree_util.keystr(path)} is {np.dtype(dtype)}{list(shape)}, "
                    f"expected {np.dtype(want.dtype)}{list(want.shape)} (nothing was changed)"
                )
        inner = {g: e.from_tree(state.inner[g]) for g, e in enumerate(self._engines)}
        values = [dict(pg._values) for pg in self.param_groups]
        for g, hyper in state.hyperparams.items():
            for name, value in hyper.items():
                old = values[g][name]
                if isinstance(value, (tuple, list)):
                    pairs = zip(value, old, strict=True)
                    values[g][name] = tuple(o if v is None else _read_back(v, o) for v, o in pairs)
                else:
                    values[g][name] = _read_back(value, old)
        self._inner = inner
        for pg, new in zip(self.param_groups, values, strict=True):
            pg._values.update(new)
        self._refresh_host_vector()

    def step(self, grads: Any, closure: Callable | None = None) -> Any:
        """Apply one update with ``grads`` (same structure, shapes and dtypes as ``params``);
        store and return the new parameters.  ``closure`` is not supported (torch's LBFGS
        convention) and must be ``None``."""
        if closure is not None:
            raise ValueError("closure is not supported: compute the gradients and pass them")
        # Leaf shapes and dtypes are checked when the step is traced (checked_step).
        grad_leaves = self._grad_leaves(grads)
        _programs.check_not_traced(grad_leaves, "optimizer.step")
        self._sync()
        args = self._step_arguments(grad_leaves)
        self._adopt("optimizer.step", *self._step_program().run(args, self._zero_decay_applies))
        return self._params

    def make_train_step(
        self,
        loss_fn: Callable[..., Any],
        *,
        has_aux: bool = False,
        accumulation_steps: int = 1,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        clip_value: float | None = None,
    ) -> Callable:
        """A function ``train_step(*args, **kwargs)`` that runs one training step in a single
        jitted program: ``loss_fn(params, *args, **kwargs)`` and its gradient with respect to
        the current params (``jax.value_and_grad``), then this optimizer's update, exactly as
        ``step`` would apply it.  It stores the new params and returns the loss (``(loss,
        aux)`` with ``has_aux=True``, as ``jax.value_and_grad``).

        The gradients never leave the compiled program: where a loop of ``jax.grad`` then
        ``opt.step`` dispatches every parameter leaf four times per step (params in, gradients
        out, both back in), this dispatches it once in and once out.  ``args`` are traced
        (arrays: a new shape compiles once); ``param_groups`` writes, schedulers and
        ``add_param_group`` work as with ``step`` and never recompile for a value change.

        torch's loop pieces, in the same program: ``accumulation_steps=k`` takes k stacked
        micro-batches (every argument's first axis) and sums the gradients of ``loss_i / k``
        in order, as ``(loss / k).backward()`` per micro-batch does (the loss returned: the
        sum of the ``loss_i / k``); ``max_norm`` / ``norm_type`` clip the summed gradients
        with :func:`jaxsched.clip_grad_norm_`, ``clip_value`` with
        :func:`jaxsched.clip_grad_value_`, before the update.
        """
        return TrainStep(
            self, loss_fn, has_aux=has_aux, accumulation_steps=accumulation_steps,
            max_norm=max_norm, norm_type=norm_type, clip_value=clip_value,
        )  # fmt: skip

    def zero_grad(self, set_to_none: bool = True) -> None:
        """A no-op, kept so torch recipes port unchanged: JAX gradients are values returned by
        ``jax.grad``, never accumulated into the parameters, so there is nothing to clear."""
        del set_to_none

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add parameters (e.g. an unfrozen backbone) with their own hyperparameters.  The new
        leaves join ``params``; existing groups keep their state.  Recompiles ``step``."""
        if not isinstance(param_group, Mapping) or "params" not in param_group:
            raise TypeError("param_group must be a dict with a 'params' entry")
        param_group = {
            **param_group,
            "params": _trees.plain(_param_names.from_pairs(param_group["params"])),
        }
        _trees.check_float_leaves(param_group["params"])
        union = _trees.merge([self._params, param_group["params"]])
        values = self._values(param_group)
        self.spec.factory(**self._factory_kwargs(values))
        self._sync()
        previous = self._tree_inner()
        self._params = jax.tree.map(lambda x: jnp.array(x, copy=True), union)
        self._group_trees.append(_trees.skeleton(param_group["params"]))
        self.param_groups.append(ParamGroup(self, len(self.param_groups), values))
        self._build(previous)

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``{"state": {i: {...}}, "param_groups": [{..., "params": [i...]}]}``."""
        inner = self.opt_state.inner
        return _state_dict.to_torch_layout(
            self.spec,
            [
                (pg._values, len(idx), inner[g])
                for g, (pg, idx) in enumerate(
                    zip(self.param_groups, self._group_indices, strict=True)
                )
            ],
        )

    def _group_names(self) -> list[list[str]]:
        """Each group's ``param_names``: its leaves' tree paths, dotted (torch's form)."""
        names = _param_names.names_of(self._params)
        return [[names[i] for i in idx] for idx in self._group_indices]

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state dict from :meth:`state_dict` or from torch itself (tensors).  Everything
        is validated first; on error the optimizer is unchanged.  The loaded arrays go from the
        host straight to the parameters' devices and shardings.  Saved entries are matched to
        the parameters by ``param_names`` (the tree paths; ours always has them, torch's when
        its optimizer was built on ``named_parameters()``), else by position, which is refused
        where ambiguous (two parameters of a group with one shape)."""
        state_dict = _param_names.align(
            state_dict,
            self._group_names(),
            [[tuple(self._leaves[i].shape) for i in idx] for idx in self._group_indices],
        )
        # parameters of a group at different steps (or some never stepped): per-parameter
        # state, as the optimizer that saved it (ours, or torch after None gradients)
        per_parameter = self._per_parameter or (
            self.spec.skips_missing and _state_dict.needs_per_parameter(state_dict)
        )
        previous_mode = self._per_parameter
        self._per_parameter = per_parameter
        try:
            values, loaded = self._read_state_dict(state_dict)
        finally:
            self._per_parameter = previous_mode
        # A fresh build makes the state torch would create lazily for what the state dict does
        # not hold; the loaded entries replace the rest.
        with self._all_or_nothing():
            for group, v in zip(self.param_groups, values, strict=True):
                group._values = v
            self._per_parameter = per_parameter
            self._build(None)
            fresh = self._tree_inner()
            self._build({g: _state_dict.overlay(fresh[g], loaded[g]) for g in fresh})
        self._dirty.clear()

    def _read_state_dict(self, state_dict: Mapping[str, Any]) -> tuple[list, dict]:
        return _state_dict.read_torch_layout(
            state_dict,
            spec=self.spec,
            sizes=[len(idx) for idx in self._group_indices],
            defaults=self.defaults,
            required=self._hyperparameter_names,
            check_values=lambda v: self.spec.factory(**self._factory_kwargs(v)),
            state_shapes=lambda v: jax.eval_shape(self._transform(v).init, self.params).inner,
        )

    def __getstate__(self) -> dict[str, Any]:
        """What ``copy.deepcopy`` and ``pickle`` keep: the groups, params and state as host
        arrays; compiled programs are caches and are rebuilt.  A copy lives on the default
        device (re-shard its ``params`` to place it elsewhere)."""
        self._sync()
        groups = zip(self._group_trees, self.param_groups, strict=True)
        return {
            "defaults": dict(self.defaults),
            "options": dict(self._options),
            "groups": [(skeleton, dict(pg._values)) for skeleton, pg in groups],
            "params": jax.device_get(self._params),
            "state": jax.device_get(self._tree_inner()),
            "steps_taken": self.steps_taken,
            "per_parameter": self._per_parameter,
        }

    def __setstate__(self, saved: Mapping[str, Any]) -> None:
        specs = [
            {"params": _trees.subtree(saved["params"], skeleton), **values}
            for skeleton, values in saved["groups"]
        ]
        Optimizer.__init__(self, specs, saved["defaults"], saved.get("options"))
        if saved.get("per_parameter"):
            self._per_parameter = True
            self._build(None)
        self._inner = {g: e.from_tree(saved["state"][g]) for g, e in enumerate(self._engines)}
        self.steps_taken = saved["steps_taken"]

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for g, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {g}")
            lines.extend(f"    {k}: {v}" for k, v in group._values.items())
        return "\n".join([*lines, ")"])

    # -- internals ------------------------------------------------------------------------------

    def _tree_inner(self) -> dict[int, Any]:
        """The groups' states in the transform's layout (each leaf placed like its parameter)."""
        return {g: e.to_tree(self._inner[g]) for g, e in enumerate(self._engines)}

    def _adopt(self, what: str, leaves: list[jax.Array], inner: Any, vector: Any) -> None:
        """Take what a program returned: new parameter leaves, state and vector (refused, with
        nothing changed, when the call ran under a JAX transformation)."""
        _programs.check_not_traced(leaves[:1], what)  # all outputs or none are tracers
        self._inner = inner
        self._vector.returned(vector)
        self._leaves, self._params = leaves, self._treedef.unflatten(leaves)
        self.steps_taken += 1

    def _group_leaves(self, g: int) -> list[jax.Array]:
        return [self._leaves[i] for i in self._group_indices[g]]

    def _mark_dirty(self, g: int, key: str) -> None:
        """Called by ``ParamGroup.__setitem__``.  A number written over a number (the common
        case: a scheduler's lr) goes straight into the host vector; anything else is settled
        at the next step (possibly by rebuilding the transform)."""
        if key not in self._hyperparameter_names:
            return
        value = self.param_groups[g]._values[key]
        if float32_array(value) != ((g, key) in self._float32_keys):
            self._dirty.add((g, key))  # float32 arithmetic switched on or off: a rebuild
            return
        if self._vector.write(g, key, value):
            if key == "weight_decay":  # the zero-decay programs may no longer apply
                for programs in self._programs.values():
                    programs.forget()
        else:
            self._dirty.add((g, key))

    def _sync(self) -> None:
        """Push hyperparameters written into ``param_groups`` to the optax state.  A write that
        cannot be honoured raises here, at every step until it is fixed (as torch's step does),
        and changes nothing."""
        if not self._dirty:
            return
        with self._all_or_nothing(keep_values=True):
            rebuild = False
            for g, key in self._dirty:
                value = self.param_groups[g]._values[key]
                slots = self._vector.slots[g]
                if key not in slots or _slot_of(value) != slots[key]:
                    rebuild = True  # a structural value (bool, schedule) or a changed shape
                if float32_array(value) != ((g, key) in self._float32_keys):
                    rebuild = True  # torch's float32-tensor arithmetic, on or off
            if rebuild:
                for pg in self.param_groups:
                    self.spec.factory(**self._factory_kwargs(pg._values))
                self._build(self._tree_inner())
            else:
                self._refresh_host_vector()
        self._dirty.clear()

    # Everything a build or a load replaces; restored as a whole when one fails.
    _BUILT = (
        "_per_parameter", "_skip_masks", "_skip_zeros", "_group_indices", "_leaves", "_treedef",
        "_dict_tree", "_signature", "tx", "_engines", "_vector", "_inner", "_programs",
        "_zero_decay_pattern", "_params", "_references", "_callbacks", "_float32_keys",
    )  # fmt: skip

    @contextlib.contextmanager
    def _all_or_nothing(self, keep_values: bool = False) -> Iterator[None]:
        """Run a change (a rebuild, a load, a new group) whole or not at all: on an exception
        every built piece, the groups and (unless ``keep_values``: the user's own writes) their
        values are put back as they were."""
        built = {name: getattr(self, name) for name in self._BUILT}
        groups, trees = list(self.param_groups), list(self._group_trees)
        values = [(pg, pg._values, dict(pg._values)) for pg in groups]
        try:
            yield
        except BaseException:
            for name, value in built.items():
                setattr(self, name, value)
            self.param_groups[:] = groups
            self._group_trees[:] = trees
            if not keep_values:
                for pg, mapping, content in values:
                    mapping.clear()
                    mapping.update(content)
                    pg._values = mapping
            raise

    def _refresh_host_vector(self) -> None:
        """Rebuild the host vector from the group values; decide programs again."""
        self._vector.refresh()
        for programs in self._programs.values():
            programs.forget()


def _is_none(x: Any) -> bool:
    return x is None


def _read_back(value: Any, old: Any) -> float:
    """A hyperparameter read back from an array: the current Python value when the array holds
    its rounding (an unchanged value round-trips exactly), else the array's value."""
    number = float(value)
    dtype = getattr(value, "dtype", None)
    if dtype is not None and _is_number(old) and float(np.asarray(old, dtype)) == number:
        return old
    return number


def _slot_of(value: Any) -> tuple[bool, ...] | str | None:
    """``None`` for a number, a mask for a tuple holding numbers, ``"static"`` otherwise."""
    if _is_number(value):
        return None
    if isinstance(value, tuple) and any(_is_number(v) for v in value):
        return tuple(_is_number(v) for v in value)
    return "static"
