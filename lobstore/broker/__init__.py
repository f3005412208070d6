"""The token broker's moving parts outside the database: token providers (the GitHub App),
the in-memory token cache and the registration expiry sweep. Registrations themselves are
stored by :class:`lobstore.repositories.broker.BrokerRepository`.

Nothing is imported here: ``lobstore.broker.github`` needs ``cryptography`` (the ``broker``
extra) and must load only when a GitHub App is configured.
"""
