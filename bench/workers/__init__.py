"""Workers the harness runs behind Hookgate."""
