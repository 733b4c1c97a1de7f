"""Pure data and rules: flows, deliveries and their states, backoff. No I/O lives here."""
