"""The advisor: memory estimate per device, speed and quality models, the recommendation and the chat plan."""
