"""Ways into a store from outside the process (the lobwife HTTP API lives here)."""
