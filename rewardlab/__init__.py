"""rewardlab: reward models and preference data for spoken dialogue."""

__version__ = "0.1.0"
