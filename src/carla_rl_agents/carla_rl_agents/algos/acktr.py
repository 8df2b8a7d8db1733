"""Actor Critic using Kronecker-Factored Trust Region (ACKTR).

Paper: Wu et al. 2017, "Scalable trust-region method for deep reinforcement learning using
Kronecker-factored approximation", https://arxiv.org/abs/1708.05144
Code this follows: OpenAI baselines ``acktr`` and ikostrikov/pytorch-a2c-ppo-acktr-gail.

ACKTR is A2C (one update per rollout on the policy-gradient, value and entropy losses) with the policy's
optimizer replaced by K-FAC (:class:`~carla_rl_agents.algos.kfac.KFACOptimizer`): a natural-gradient step
with the Fisher approximated per layer by Kronecker factors, whose size is bounded by KL clipping (a
trust region). The factors come from a *sampled-Fisher* backward pass on the same forward pass as the
training loss: the log-probability of the rollout actions (samples of the current policy, since ACKTR
updates once per rollout) plus a value-head term in which the value output is treated as the mean of a
Gaussian ``N(V, sigma^2)`` with ``1 / (2 sigma^2) = vf_coef`` (so ``vf_coef * (R - V)^2`` is its negative
log-likelihood) and regressed on a target sampled from it, ``V + sigma * eps``. With ``vf_coef=0.5``
(sigma = 1) this is the unit-variance noise of both reference implementations.
"""

import math
from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    BasePolicy,
    MultiInputActorCriticPolicy,
)
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F

from carla_rl_agents.algos.kfac import KFACOptimizer

SelfACKTR = TypeVar("SelfACKTR", bound="ACKTR")


class ACKTR(OnPolicyAlgorithm):
    """ACKTR: A2C with a K-FAC natural-gradient optimizer and KL clipping (see the module docstring).

    Defaults follow OpenAI baselines' ACKTR (lr 0.25, n_steps 20, kl_clip 0.001, ent_coef 0.01, momentum 0.9).
    The K-FAC state (running factors, eigenbases, momentum, step counter) is ``policy.optimizer``'s state dict,
    so SB3's ``save``/``load`` resume it exactly.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: K-FAC step size, or a schedule of the remaining progress (from 1 to 0)
    :param n_steps: Steps per environment per update (batch size is ``n_steps * n_envs``)
    :param gamma: Discount factor
    :param gae_lambda: GAE lambda; 1.0 gives A2C's n-step returns
    :param ent_coef: Entropy coefficient of the loss
    :param vf_coef: Value loss coefficient (> 0; also sets the value-head Fisher, see the module docstring)
    :param max_grad_norm: Clip the gradient norm before preconditioning (None: no clipping, as ACKTR's KL
        clipping already bounds the step)
    :param kfac_momentum: Momentum of the K-FAC step
    :param stat_decay: Running-average decay of the Kronecker factors
    :param damping: Tikhonov damping of the approximate Fisher
    :param kl_clip: Bound on the quadratic-model KL of one update
    :param Ts: Recompute the factors' eigendecompositions every ``Ts`` updates
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation.
    :param stats_window_size: Window size for the rollout logging (episodes averaged)
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation (its own optimizer
        settings are unused: the optimizer is replaced by K-FAC)
    :param verbose: Verbosity level: 0 no output, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 0.25,
        n_steps: int = 20,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.01,
        vf_coef: float = 0.5,
        max_grad_norm: float | None = None,
        kfac_momentum: float = 0.9,
        stat_decay: float = 0.95,
        damping: float = 1e-2,
        kl_clip: float = 1e-3,
        Ts: int = 10,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,  # type: ignore[arg-type]
            use_sde=False,
            sde_sample_freq=-1,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
        )
        if vf_coef <= 0:
            raise ValueError(f"ACKTR needs vf_coef > 0 (it sets the value-head Fisher), got {vf_coef}")
        self.kfac_momentum = kfac_momentum
        self.stat_decay = stat_decay
        self.damping = damping
        self.kl_clip = kl_clip
        self.Ts = Ts
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        self.policy.optimizer = KFACOptimizer(
            self.policy,
            lr=self.lr_schedule(1),
            momentum=self.kfac_momentum,
            stat_decay=self.stat_decay,
            damping=self.damping,
            kl_clip=self.kl_clip,
            Ts=self.Ts,
        )

    def train(self) -> None:
        """One K-FAC update on the whole rollout: Fisher statistics, then the natural-gradient step."""
        self.policy.set_training_mode(True)
        kfac: KFACOptimizer = self.policy.optimizer  # type: ignore[assignment]
        self._update_learning_rate(kfac)

        rollout_data = next(self.rollout_buffer.get(batch_size=None))
        actions = rollout_data.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        with kfac.capture():
            values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)
        values = values.flatten()

        policy_loss = -(rollout_data.advantages * log_prob).mean()
        value_loss = F.mse_loss(rollout_data.returns, values)
        entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

        # Sampled Fisher: NLL of the (on-policy) actions and of value targets drawn from N(V, sigma^2).
        sigma = 1.0 / math.sqrt(2.0 * self.vf_coef)
        sampled_values = (values + sigma * th.randn_like(values)).detach()
        fisher_loss = -log_prob.mean() + self.vf_coef * ((sampled_values - values) ** 2).mean()
        kfac.update_stats(fisher_loss)

        kfac.zero_grad()
        loss.backward()
        if self.max_grad_norm is not None:
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        kfac.step()

        self._n_updates += 1
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/entropy_loss", entropy_loss.item())
        self.logger.record("train/policy_loss", policy_loss.item())
        self.logger.record("train/value_loss", value_loss.item())
        self.logger.record("train/kl_clip_nu", kfac.nu)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())

    def learn(
        self: SelfACKTR,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "ACKTR",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfACKTR:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
