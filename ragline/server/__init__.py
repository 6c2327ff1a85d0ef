"""`ragline serve`: the process that owns a store and serves it over HTTP (api, service,
serve), the client other processes use instead of opening the store (client), and its
status page, metrics and access rules."""
