"""The demo world: real espeak-ng speech, known ground truth, simulated annotators."""

from rewardlab.demo.build import DemoConfig, build_demo_project

__all__ = ["DemoConfig", "build_demo_project"]
