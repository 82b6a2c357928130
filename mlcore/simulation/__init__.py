"""A simulated shop for the closed loop: hidden customer states, true action effects, a fast scorer."""
