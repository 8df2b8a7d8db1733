"""K-FAC optimizer: factor shapes and values, the exact natural-gradient step, KL clipping, exact resume."""

import copy
import math

import pytest
import torch as th
from torch import nn

from carla_rl_agents.algos.kfac import KFACOptimizer, input_factor, output_grad_factor

th.set_num_threads(1)


def _gaussian_fisher_loss(mean: th.Tensor, noise: th.Tensor, sigma: float) -> th.Tensor:
    """Batch-mean NLL of targets ``mean + sigma * noise`` under ``N(mean, sigma^2 I)`` (up to a constant)."""
    targets = (mean + sigma * noise).detach()
    return ((targets - mean) ** 2).sum(dim=1).mean() / (2 * sigma**2)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_factor_shapes(bias: bool) -> None:
    th.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4, bias=bias), nn.Tanh(), nn.Linear(4, 3, bias=bias))
    kfac = KFACOptimizer(model)
    with kfac.capture():
        out = model(th.randn(8, 5))
    kfac.update_stats(out.pow(2).mean())
    first, second = kfac.state[model[0].weight], kfac.state[model[2].weight]
    extra = 1 if bias else 0
    assert first["A"].shape == (5 + extra, 5 + extra) and first["G"].shape == (4, 4)
    assert second["A"].shape == (4 + extra, 4 + extra) and second["G"].shape == (3, 3)
    for factor in (first["A"], first["G"], second["A"], second["G"]):
        assert th.allclose(factor, factor.t())
    if bias:  # the appended 1 makes the last diagonal entry E[1 * 1] = 1
        assert first["A"][-1, -1].item() == pytest.approx(1.0)


def test_conv_factors_match_per_location_sums() -> None:
    """KFC factors: A = E[sum_t a_t a_t^T] over patches, G = E[sum_t g_t g_t^T] / T, checked with loops."""
    th.manual_seed(0)
    conv = nn.Conv2d(2, 3, kernel_size=3, stride=2, padding=1)
    kfac = KFACOptimizer(conv)
    x = th.randn(4, 2, 7, 7)
    with kfac.capture():
        out = conv(x)
    kfac.update_stats(out.pow(2).sum(dim=(1, 2, 3)).mean())  # batch mean of per-sample losses
    state = kfac.state[conv.weight]
    assert state["A"].shape == (2 * 3 * 3 + 1, 2 * 3 * 3 + 1) and state["G"].shape == (3, 3)

    batch, _, height, width = out.shape
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    per_sample_grad = 2 * out.detach()  # gradient of each sample's own loss w.r.t. its outputs
    expected_a = th.zeros(19, 19)
    expected_g = th.zeros(3, 3)
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                patch = padded[b, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].reshape(-1)
                a = th.cat([patch, th.ones(1)])
                expected_a += th.outer(a, a) / batch
                g = per_sample_grad[b, :, i, j]
                expected_g += th.outer(g, g) / (batch * height * width)
    assert th.allclose(state["A"], expected_a, atol=1e-5)
    assert th.allclose(state["G"], expected_g, atol=1e-5)


def test_conv_without_bias_factor_shape() -> None:
    conv = nn.Conv2d(3, 4, kernel_size=2, bias=False)
    kfac = KFACOptimizer(conv)
    with kfac.capture():
        out = conv(th.randn(2, 3, 5, 5))
    kfac.update_stats(out.sum())
    assert kfac.state[conv.weight]["A"].shape == (12, 12) and kfac.state[conv.weight]["G"].shape == (4, 4)


def test_factor_helpers_for_plain_linear_batch() -> None:
    layer = nn.Linear(2, 2)
    x = th.tensor([[1.0, 2.0], [3.0, 4.0]])
    expected = th.tensor([[10.0, 14.0, 4.0], [14.0, 20.0, 6.0], [4.0, 6.0, 2.0]]) / 2
    assert th.allclose(input_factor(layer, x), expected)
    grad_of_mean = th.tensor([[1.0, 0.0], [0.0, 1.0]]) / 2
    assert th.allclose(output_grad_factor(layer, grad_of_mean), th.eye(2) / 2)


def test_natural_gradient_step_equals_exact_damped_fisher_inverse() -> None:
    """Linear-Gaussian regression y ~ N(W x + b, sigma^2 I): the Fisher is exactly E[x x^T] (x) sigma^-2 I.

    The Fisher pass pairs every input with each of a set of noise vectors whose second moment is exactly
    the identity, so the sampled statistics equal the exact Fisher; the expected update is then computed
    independently, by solving with the full (out * (in + 1))-square damped Fisher.
    """
    th.manual_seed(0)
    n_in, n_out, sigma, lr, damping = 3, 2, 0.5, 0.3, 1e-2
    model = nn.Linear(n_in, n_out)
    kfac = KFACOptimizer(model, lr=lr, momentum=0.0, stat_decay=0.0, damping=damping, kl_clip=1e6)

    inputs = th.randn(16, n_in) + th.tensor([0.5, -1.0, 2.0])
    noise_set = math.sqrt(n_out) * th.cat([th.eye(n_out), -th.eye(n_out)])  # (1/4) sum e e^T = I
    x = inputs.repeat_interleave(len(noise_set), dim=0)
    noise = noise_set.repeat(len(inputs), 1)
    with kfac.capture():
        mean = model(x)
    kfac.update_stats(_gaussian_fisher_loss(mean, noise, sigma))

    targets = th.randn(len(inputs), n_out)
    kfac.zero_grad()
    loss = ((model(inputs) - targets) ** 2).sum(dim=1).mean() / (2 * sigma**2)
    loss.backward()
    grad = th.cat([model.weight.grad, model.bias.grad.unsqueeze(1)], dim=1)  # [W | b], (out, in + 1)
    before = th.cat([model.weight, model.bias.unsqueeze(1)], dim=1).detach().clone()

    kfac.step()

    after = th.cat([model.weight, model.bias.unsqueeze(1)], dim=1).detach()
    homogeneous = th.cat([inputs, th.ones(len(inputs), 1)], dim=1)
    input_moment = homogeneous.t() @ homogeneous / len(inputs)
    # Row-major vec([W | b]): the Fisher of the output-major layout is (sigma^-2 I_out) (x) E[x x^T].
    fisher = th.kron(th.eye(n_out) / sigma**2, input_moment).double()
    damped = fisher + damping * th.eye(fisher.shape[0], dtype=th.float64)
    expected_step = -lr * th.linalg.solve(damped, grad.reshape(-1).double()).reshape(grad.shape)
    assert th.allclose((after - before).double(), expected_step, rtol=1e-3, atol=1e-6)
    assert kfac.nu == 1.0


def test_kl_clipping_scales_the_step() -> None:
    """nu = sqrt(kl_clip / (lr^2 sum(v * grad))), v the unclipped natural gradient, scales the whole step."""
    th.manual_seed(0)
    lr, kl_clip = 0.5, 1e-6
    model = nn.Linear(3, 2)
    reference = copy.deepcopy(model)
    x, noise, targets = th.randn(32, 3), th.randn(32, 2), th.randn(32, 2)
    steps, grads = [], []
    for net, clip in ((reference, 1e6), (model, kl_clip)):
        kfac = KFACOptimizer(net, lr=lr, momentum=0.0, stat_decay=0.0, kl_clip=clip)
        with kfac.capture():
            mean = net(x)
        kfac.update_stats(_gaussian_fisher_loss(mean, noise, 1.0))
        kfac.zero_grad()
        ((mean - targets) ** 2).mean().backward()
        before = [p.detach().clone() for p in net.parameters()]
        grads.append([p.grad.clone() for p in net.parameters()])
        kfac.step()
        steps.append([p.detach() - b for p, b in zip(net.parameters(), before, strict=True)])
    natural = [-step / lr for step in steps[0]]
    vg = sum(float((v * g).sum()) for v, g in zip(natural, grads[0], strict=True))
    expected_nu = math.sqrt(kl_clip / (lr**2 * vg))
    assert 0 < expected_nu < 1
    assert kfac.nu == pytest.approx(expected_nu, rel=1e-4)
    for clipped_step, full_step in zip(steps[1], steps[0], strict=True):
        assert th.allclose(clipped_step, expected_nu * full_step, rtol=1e-4, atol=1e-9)


def _train_steps(model: nn.Module, kfac: KFACOptimizer, batches: list[tuple[th.Tensor, th.Tensor]]) -> None:
    for x, noise in batches:
        with kfac.capture():
            logits = model(x)
        kfac.update_stats(_gaussian_fisher_loss(logits, noise, 1.0))
        kfac.zero_grad()
        (logits**2).mean().backward()
        kfac.step()


def test_state_dict_round_trip_resumes_exactly() -> None:
    th.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    batches = [(th.randn(5, 1, 6, 6), th.randn(5, 3)) for _ in range(7)]
    kfac = KFACOptimizer(model, Ts=3)
    _train_steps(model, kfac, batches[:4])  # 4 steps: the eigenbases in use are from step 3, not the factors'

    saved_model, saved_optim = copy.deepcopy(model.state_dict()), copy.deepcopy(kfac.state_dict())
    assert saved_optim["kfac_steps"] == 4
    _train_steps(model, kfac, batches[4:])

    th.manual_seed(1)
    resumed = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    resumed.load_state_dict(saved_model)
    resumed_kfac = KFACOptimizer(resumed, Ts=3)
    resumed_kfac.load_state_dict(saved_optim)
    assert resumed_kfac.steps == 4
    weight_state = resumed_kfac.state[resumed[0].weight]
    assert {"A", "G", "d_a", "Q_a", "d_g", "Q_g", "momentum_buffer"} <= set(weight_state)
    _train_steps(resumed, resumed_kfac, batches[4:])

    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        assert th.equal(p, q)
