"""Kronecker-factored approximate curvature (K-FAC) optimizer, as used by ACKTR.

References:

* Martens & Grosse 2015, "Optimizing neural networks with Kronecker-factored approximate curvature".
* Grosse & Martens 2016, "A Kronecker-factored approximate Fisher matrix for convolution layers" (KFC).
* Wu et al. 2017, "Scalable trust-region method for deep reinforcement learning using Kronecker-factored
  approximation" (ACKTR); code: OpenAI baselines ``acktr`` and ikostrikov/pytorch-a2c-ppo-acktr-gail.

For a layer ``s = W a`` (``a`` with a 1 appended when the layer has a bias, so that ``W`` holds the bias as
its last column) the Fisher block of ``W`` is approximated by the Kronecker product of two small factors,
``F ~= A (x) G`` with ``A = E[a a^T]`` and ``G = E[g g^T]``, ``g`` the gradient of the per-sample
log-likelihood w.r.t. the pre-activation ``s``. For a 2-D convolution, ``a`` are the unfolded input patches
and ``s`` the outputs at each of the ``T`` spatial locations; following KFC (spatially homogeneous,
spatially uncorrelated derivatives) ``A = E[sum_t a_t a_t^T]`` and ``G = E[sum_t g_t g_t^T] / T``.
Layers other than ``nn.Linear`` and ``nn.Conv2d`` (with ``groups=1``, zero padding given as numbers),
and parameters outside such layers (e.g. a Gaussian policy's ``log_std``), get the plain gradient.

The factors are estimated from a separate "Fisher" backward pass, not from the training loss: the caller
runs its forward pass inside :meth:`KFACOptimizer.capture` and then calls :meth:`KFACOptimizer.update_stats`
with a *sampled-Fisher* loss, the batch mean of the negative log-likelihood of targets sampled from the
model itself (ACKTR: log-prob of actions sampled from the policy plus a Gaussian value-head term). Because
that loss is a batch mean, the per-sample gradients are the captured output gradients times the batch size.
Running averages with ``stat_decay`` smooth the factors over updates. Every ``Ts`` steps the factors are
eigendecomposed, ``A = Q_a diag(d_a) Q_a^T`` and ``G = Q_g diag(d_g) Q_g^T``; with them the damped
natural gradient ``(A (x) G + damping I)^-1 grad`` is, as a matrix, ``Q_g [(Q_g^T grad Q_a) / (d_g d_a^T +
damping)] Q_a^T`` (the elementwise division is exact in the joint eigenbasis), i.e. ``G^-1 grad A^-1``.

The step ``v`` is then rescaled so that the KL divergence predicted by the quadratic model,
``lr^2 v^T F v / 2 ~= lr^2 v . grad / 2``, stays within the trust region (ACKTR's KL clipping, with the
references' convention of dropping the 1/2): ``nu = min(1, sqrt(kl_clip / (lr^2 sum(v * grad))))``, over
all parameters together. The final update is heavy-ball momentum on
``nu * v``: ``buf = momentum * buf + nu * v`` and ``p -= lr * (1 - momentum) * buf``, so that the steady-state
step is ``lr`` (both reference implementations feed ``lr * (1 - momentum)`` to a momentum optimizer).
"""

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch as th
from torch import nn
from torch.nn import functional as F
from torch.optim import Optimizer

#: Eigenvalues of the factors below this are treated as 0 (only the damping remains), as in the references.
EIGENVALUE_FLOOR = 1e-6


def is_kfac_layer(module: nn.Module) -> bool:
    """Whether K-FAC preconditions ``module``: a Linear, or a Conv2d whose patches ``F.unfold`` reproduces."""
    if isinstance(module, nn.Linear):
        return True
    return (
        isinstance(module, nn.Conv2d)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    )


def _has_bias(module: nn.Module) -> bool:
    return module.bias is not None and module.bias.requires_grad


def _layer_inputs(module: nn.Module, x: th.Tensor) -> th.Tensor:
    """Layer inputs as (batch, locations, features), with a trailing 1 for the bias when the layer has one."""
    if isinstance(module, nn.Conv2d):
        patches = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride).transpose(1, 2)
    else:
        patches = x.reshape(x.shape[0], -1, x.shape[-1])
    if _has_bias(module):
        patches = th.cat([patches, patches.new_ones(*patches.shape[:2], 1)], dim=-1)
    return patches


def input_factor(module: nn.Module, x: th.Tensor) -> th.Tensor:
    """``A = E_batch[sum_t a_t a_t^T]`` from the layer input ``x`` (sum over conv locations, 1 for Linear)."""
    a = _layer_inputs(module, x)
    batch = a.shape[0]
    a = a.reshape(-1, a.shape[-1])
    return a.t() @ a / batch


def output_grad_factor(module: nn.Module, grad_output: th.Tensor) -> th.Tensor:
    """``G = E_batch[sum_t g_t g_t^T] / T`` from the gradient of a batch-mean loss w.r.t. the layer output."""
    batch = grad_output.shape[0]
    if isinstance(module, nn.Conv2d):
        g = grad_output.flatten(2).transpose(1, 2)
    else:
        g = grad_output.reshape(batch, -1, grad_output.shape[-1])
    locations = g.shape[1]
    g = g.reshape(-1, g.shape[-1]) * batch  # per-sample gradients: the loss was a mean over the batch
    return g.t() @ g / (batch * locations)


class KFACOptimizer(Optimizer):
    """K-FAC natural-gradient optimizer with ACKTR's KL clipping and momentum (see the module docstring).

    Usage, once per update::

        with kfac.capture():
            out = model(x)              # forward pass shared by the Fisher loss and the training loss
        kfac.update_stats(fisher_loss(out))   # sampled-Fisher loss; keeps the graph for the next backward
        kfac.zero_grad()
        training_loss(out).backward()
        kfac.step()

    :param model: the module whose trainable parameters are optimized; its Linear/Conv2d layers are hooked.
    :param lr: step size (of the natural gradient, before KL clipping).
    :param momentum: heavy-ball momentum; the step is scaled by ``1 - momentum`` so its steady state is ``lr``.
    :param stat_decay: running-average decay of the factors (``m = decay * m + (1 - decay) * new``).
    :param damping: Tikhonov damping added to the Kronecker-factored Fisher.
    :param kl_clip: bound on the quadratic-model KL of one step (scales the step by ``nu <= 1``).
    :param Ts: the factors' eigendecompositions are recomputed every ``Ts`` steps (and when first needed).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.25,
        momentum: float = 0.9,
        stat_decay: float = 0.95,
        damping: float = 1e-2,
        kl_clip: float = 1e-3,
        Ts: int = 10,
    ) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not 0.0 <= stat_decay < 1.0:
            raise ValueError(f"stat_decay must be in [0, 1), got {stat_decay}")
        if damping <= 0 or kl_clip <= 0 or Ts < 1:
            raise ValueError(f"need damping > 0, kl_clip > 0, Ts >= 1; got {damping}, {kl_clip}, {Ts}")
        super().__init__([p for p in model.parameters() if p.requires_grad], dict(lr=lr, momentum=momentum))
        self.stat_decay = stat_decay
        self.damping = damping
        self.kl_clip = kl_clip
        self.Ts = Ts
        #: Number of :meth:`step` calls so far (drives the ``Ts`` schedule; part of the state dict).
        self.steps = 0
        #: KL-clipping factor of the last step (1 means the step was not shrunk).
        self.nu = 1.0
        self.layers: list[nn.Module] = [m for m in model.modules() if is_kfac_layer(m) and m.weight.requires_grad]
        self._capturing = False
        self._captured: dict[nn.Module, tuple[th.Tensor, th.Tensor]] = {}
        for layer in self.layers:
            layer.register_forward_hook(self._save_layer_io)

    def _save_layer_io(self, module: nn.Module, inputs: tuple[th.Tensor, ...], output: th.Tensor) -> None:
        if not (self._capturing and th.is_grad_enabled()):
            return
        if module in self._captured:
            raise RuntimeError(f"{module} ran twice inside KFACOptimizer.capture(); K-FAC needs one use per layer")
        self._captured[module] = (inputs[0].detach(), output)

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Record the inputs and outputs of the hooked layers during the forward pass run inside."""
        self._captured.clear()
        self._capturing = True
        try:
            yield
        finally:
            self._capturing = False

    def update_stats(self, fisher_loss: th.Tensor, retain_graph: bool = True) -> None:
        """Fold the factors of the captured forward pass into the running averages.

        :param fisher_loss: batch mean of the negative log-likelihood of targets sampled from the model
            (any sign works: only outer products of its gradients are used).
        :param retain_graph: keep the autograd graph, so the training loss can reuse the same forward pass.
        """
        layers = list(self._captured)
        if not layers:
            raise RuntimeError("update_stats() needs a forward pass run inside capture()")
        grads = th.autograd.grad(
            fisher_loss, [self._captured[m][1] for m in layers], retain_graph=retain_graph, allow_unused=True
        )
        with th.no_grad():
            for layer, grad_output in zip(layers, grads, strict=True):
                if grad_output is None:  # the layer does not influence the Fisher loss
                    continue
                factors = {
                    "A": input_factor(layer, self._captured[layer][0]),
                    "G": output_grad_factor(layer, grad_output),
                }
                state = self.state[layer.weight]
                for key, new in factors.items():
                    if key in state:
                        state[key].mul_(self.stat_decay).add_(new, alpha=1.0 - self.stat_decay)
                    else:
                        state[key] = new
        self._captured.clear()

    def _natural_gradient(self, layer: nn.Module) -> th.Tensor:
        """``(A (x) G + damping I)^-1 grad`` for one layer, as an (out, in[+1]) matrix."""
        state = self.state[layer.weight]
        if self.steps % self.Ts == 0 or "Q_a" not in state:
            for factor in ("a", "g"):
                # float64: float32 eigh returns NaN (or fails) on the near-degenerate factors of conv layers
                # that see mostly-empty rasters (a BEV, a blank camera frame)
                factor_matrix = state[factor.upper()]
                eigenvalues, eigenvectors = th.linalg.eigh(factor_matrix.double())
                eigenvalues, eigenvectors = eigenvalues.to(factor_matrix.dtype), eigenvectors.to(factor_matrix.dtype)
                state[f"d_{factor}"] = eigenvalues * (eigenvalues > EIGENVALUE_FLOOR)
                state[f"Q_{factor}"] = eigenvectors
        grad = layer.weight.grad.reshape(layer.weight.shape[0], -1)
        if _has_bias(layer):
            grad = th.cat([grad, layer.bias.grad.unsqueeze(1)], dim=1)
        q_a, q_g = state["Q_a"], state["Q_g"]
        scaled = (q_g.t() @ grad @ q_a) / (state["d_g"].unsqueeze(1) * state["d_a"].unsqueeze(0) + self.damping)
        return q_g @ scaled @ q_a.t()

    @th.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Natural-gradient step with KL clipping and momentum, from the gradients in ``p.grad``."""
        loss = None
        if closure is not None:
            with th.enable_grad():
                loss = closure()
        updates = {p: p.grad for group in self.param_groups for p in group["params"] if p.grad is not None}
        for layer in self.layers:
            if layer.weight.grad is None or "A" not in self.state[layer.weight]:
                continue  # not used by the loss, or no Fisher statistics yet: plain gradient
            v = self._natural_gradient(layer)
            n_weight = v.shape[1] - 1 if _has_bias(layer) else v.shape[1]
            updates[layer.weight] = v[:, :n_weight].reshape(layer.weight.shape)
            if _has_bias(layer):
                updates[layer.bias] = v[:, n_weight]

        # The KL of the whole step, summed over all parameters (and groups, each with its own lr).
        vg = sum(
            group["lr"] ** 2 * float((updates[p] * p.grad).sum())
            for group in self.param_groups
            for p in group["params"]
            if p in updates
        )
        self.nu = min(1.0, math.sqrt(self.kl_clip / vg)) if vg > 0 else 1.0
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in (p for p in group["params"] if p in updates):
                direction = updates[p] * self.nu
                if momentum > 0:
                    buf = self.state[p].get("momentum_buffer")
                    if buf is None:
                        buf = self.state[p]["momentum_buffer"] = direction.clone()
                    else:
                        buf.mul_(momentum).add_(direction)
                    direction = buf
                p.add_(direction, alpha=-lr * (1.0 - momentum))
        self.steps += 1
        return loss

    def state_dict(self) -> dict:
        """Torch optimizer state (running factors, eigenbases, momentum) plus the step counter."""
        state = super().state_dict()
        state["kfac_steps"] = self.steps
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.steps = int(state_dict["kfac_steps"])
