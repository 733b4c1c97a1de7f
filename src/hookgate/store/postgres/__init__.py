"""The cluster store: ``store`` (PostgreSQL shared by several gateways), with its statements,
group commits, change feed and migrations in modules of their own."""
