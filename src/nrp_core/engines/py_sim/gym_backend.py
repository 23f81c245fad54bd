"""Gymnasium backend for ``Simulator: "OpenAI"`` (the 5-tuple ``step`` API of Gymnasium 1.x).

``WorldFileName`` is the environment id (``CartPole-v1``). ``EngineExtraConfigs`` may hold ``seed``
(int: the first ``reset`` and every engine reset use it, so runs repeat exactly) and ``make_kwargs``
(extra keyword arguments of ``gymnasium.make``). Each ``run_step`` is one ``env.step(action)``;
after ``terminated`` or ``truncated`` the environment is reset automatically.

Property type ``Property``: ``observation`` (list), ``reward``, ``doneFlag`` (terminated of the
last step), ``truncated``, ``trainInfo`` (the info dict, JSON-friendly), plus ``episode`` and
``terminations`` (count of terminated episodes since the last engine reset).
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium
import numpy as np

from nrp_core.engines.py_sim.backend import SimulatorBackend, has_display

__all__ = ["GymBackend"]

logger = logging.getLogger(__name__)

_PROPERTIES = ("observation", "reward", "doneFlag", "truncated", "trainInfo", "episode", "terminations")


def _plain(value: Any) -> Any:
    """Convert numpy values (and containers of them) into plain JSON values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


class GymBackend(SimulatorBackend):
    """A Gymnasium environment."""

    simulator = "OpenAI"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        render_mode = None
        if self.visualizer:
            if has_display():
                render_mode = "human"
            else:
                logger.warning(
                    "%s: Visualizer requested but no display is available; running headless", self.engine_name
                )
        make_kwargs = dict(self.extra_configs.get("make_kwargs") or {})
        self._env: gymnasium.Env[Any, Any] | None = None
        try:
            self._env = gymnasium.make(self.world_file, render_mode=render_mode, **make_kwargs)
        except Exception as exc:  # gymnasium raises its own error classes for unknown ids
            raise self.error(f"cannot make the environment: {exc}") from exc
        seed = self.extra_configs.get("seed")
        self.seed = None if seed is None else int(seed)
        self._steps = 0
        self._start()

    @property
    def env(self) -> gymnasium.Env[Any, Any]:
        """The environment.

        Raises:
            SimulatorError: the backend is shut down.
        """
        if self._env is None:
            raise self.error("the environment is shut down")
        return self._env

    def _start(self) -> None:
        observation, info = self.env.reset(seed=self.seed)
        self.env.action_space.seed(self.seed)
        self.observation = observation
        self.reward = 0.0
        self.done_flag = False
        self.truncated = False
        self.train_info = info
        self.episode = 0
        self.terminations = 0
        self._steps = 0

    def _convert_action(self, action: Any) -> Any:
        space = self.env.action_space
        if isinstance(space, gymnasium.spaces.Discrete):
            if isinstance(action, (list, tuple)):
                action = action[0]
            return int(action)
        if isinstance(space, gymnasium.spaces.Box):
            return np.asarray(action, dtype=space.dtype).reshape(space.shape)
        return action

    def run_step(self, action: Any, timestep_ns: int) -> bool:
        """One ``env.step``; returns the terminated flag. A None action leaves the environment still."""
        if action is None:
            return False
        try:
            observation, reward, terminated, truncated, info = self.env.step(self._convert_action(action))
        except Exception as exc:
            raise self.error(f"env.step({action!r}) failed: {exc}") from exc
        self._steps += 1
        self.observation = observation
        self.reward = float(reward)
        self.done_flag = bool(terminated)
        self.truncated = bool(truncated)
        self.train_info = info
        if terminated:
            self.terminations += 1
        if terminated or truncated:
            self.episode += 1
            self.observation, _ = self.env.reset()
        return self.done_flag

    def reset(self) -> None:
        self._start()

    def shutdown(self) -> None:
        env, self._env = self._env, None
        if env is not None:
            env.close()

    def get_model_properties(self, datapack_type: str) -> list[str]:
        self._check_type(datapack_type)
        return list(_PROPERTIES)

    def _check_type(self, datapack_type: str) -> None:
        if datapack_type != "Property":
            raise self.error(f"unknown property type '{datapack_type}' (OpenAI has only 'Property')")

    def get_model_property(self, datapack_name: str, datapack_type: str) -> Any:
        self._check_type(datapack_type)
        values = {
            "observation": self.observation,
            "reward": self.reward,
            "doneFlag": self.done_flag,
            "truncated": self.truncated,
            "trainInfo": self.train_info,
            "episode": self.episode,
            "terminations": self.terminations,
        }
        if datapack_name not in values:
            raise self.error(f"no property '{datapack_name}' (use one of {', '.join(_PROPERTIES)})")
        return _plain(values[datapack_name])

    def get_sim_time(self) -> float:
        return self._steps * self.time_step
