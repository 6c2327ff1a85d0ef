"""State that every replica of a deployment shares (`[shared_state]`): a database instead of
files in one store directory, so several `ragline serve` processes hold one day budget."""
