"""Real network peers for the job tests: servers started as separate processes by fixtures."""
