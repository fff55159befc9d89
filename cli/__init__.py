"""The ``swarm`` command: ``swarm up`` runs Swarm on this machine; the other commands talk to
the gateway over HTTP (settings from the environment and ``swarm.env``, see ``cli.envfile``)."""
