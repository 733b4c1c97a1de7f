"""What ``hookgate init`` writes: a flow file and one worker per flow, shipped as package data
so that a pip-only install can start a project without a clone of the repository."""
