"""Reinforcement learning against the GRM: reward adapters (and, in time, the PPO trainer)."""
